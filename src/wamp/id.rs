//! WAMP ids: integers in `[1, 2^53]`, so they survive a trip through a JavaScript number.

use rand::Rng;

/// A WAMP id (session, request, subscription, publication, registration).
pub type Id = u64;

/// The largest id WAMP allows: 2^53, the last integer a JavaScript double holds exactly.
pub const MAX_ID: Id = 1 << 53;

/// Whether `id` is a valid WAMP id.
pub fn is_valid(id: Id) -> bool {
    (1..=MAX_ID).contains(&id)
}

/// A random id in `[1, 2^53]` (global scope: session, publication and subscription ids).
///
/// With 2^53 values, two ids collide with probability ~n²/2^54: negligible for the sessions one cluster holds.
pub fn random() -> Id {
    rand::rng().random_range(1..=MAX_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_in_range() {
        for _ in 0..1000 {
            assert!(is_valid(random()));
        }
        assert!(!is_valid(0));
        assert!(!is_valid(MAX_ID + 1));
    }
}
