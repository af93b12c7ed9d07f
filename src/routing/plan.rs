//! The miss rule: when a read that found nothing may stop asking.

/// An acknowledged write is on at least `write_quorum` of the `replicas`, so once
/// `replicas - write_quorum + 1` of them said "absent" no acknowledged write can be on the
/// rest: the miss is final. With `write_quorum == replicas` the first miss is final.
pub fn misses_to_stop(replicas: usize, write_quorum: usize) -> usize {
    (replicas + 1)
        .saturating_sub(write_quorum)
        .clamp(1, replicas.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_is_final_once_no_quorum_can_be_elsewhere() {
        assert_eq!(misses_to_stop(1, 1), 1);
        assert_eq!(misses_to_stop(2, 2), 1);
        assert_eq!(misses_to_stop(2, 1), 2);
        assert_eq!(misses_to_stop(3, 2), 2);
        assert_eq!(misses_to_stop(3, 1), 3);
        assert_eq!(misses_to_stop(5, 3), 3);
        assert_eq!(misses_to_stop(3, 9), 1, "clamped");
    }
}
