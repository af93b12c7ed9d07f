//! One single-threaded runtime per core for client connections. A connection lives on one
//! worker from accept to close, and so do the backend connections its requests use (the pools
//! keep a slot per worker): a request never wakes another thread, and no scheduler steals
//! work. On a multi-threaded runtime the same load spent a sizeable part of its CPU waking
//! threads and moving tasks between them.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// This thread's worker slot: 1..=count() on a worker, 0 anywhere else.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// How many workers a proxy runs: one per core the process may use.
pub(crate) fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The slot of the calling thread: 1..=[`count`] on a worker, 0 on any other thread.
pub(crate) fn slot() -> usize {
    SLOT.with(Cell::get)
}

/// The running workers; dropping this stops them (and the tasks they still hold).
#[derive(Debug)]
pub(crate) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    pub(crate) fn start(name: &str) -> std::io::Result<Workers> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for slot in 1..=count() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("{name}-{slot}"))
                .spawn(move || {
                    SLOT.with(|s| s.set(slot));
                    let _ = runtime.block_on(stopped);
                })?;
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            _stop: stops,
        })
    }

    /// Runs `task` on the next worker in turn.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[at].spawn(task);
    }
}
