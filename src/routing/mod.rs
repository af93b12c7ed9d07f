//! Pure placement: which nodes hold a key, and in what order to ask them. No I/O, no async.
//!
//! A client that routes on its own side uses exactly the function the proxy uses:
//!
//! ```
//! use hrwproxy::routing::{key_hash, Ring};
//!
//! let ring = Ring::new([("a", 1.0), ("b", 1.0), ("c", 1.0)]).unwrap();
//! let owners = ring.top(key_hash(b"greeting"), 2);
//! for index in owners.iter() {
//!     println!("replica on {}", ring.id(index));
//! }
//! ```

pub mod change;
mod id_hash;
mod plan;
mod rendezvous;

pub use id_hash::{IdHashing, IdMap, IdSet};
pub use plan::misses_to_stop;
pub use rendezvous::{
    key_hash, mix, node_seed, point_counts, points_of, score, Placement, Ranked, Ring, RingError,
    TopR, DEFAULT_GROUP_SIZE, KEY_SEED, MAX_GROUP_SIZE, MAX_POINTS, MAX_REPLICAS, MAX_WEIGHT,
    MIN_GROUP_SIZE, MIN_WEIGHT, NODE_SEED, TREE_SEED,
};

#[cfg(test)]
mod hierarchical_tests;
#[cfg(test)]
mod tests;
