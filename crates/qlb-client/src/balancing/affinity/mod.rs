//! Session affinity: a key per request ([`key`]), consistent hashing of keys onto backends
//! (a [`ring`] or a [`maglev`] table, cached over the current candidates by [`table`]), and
//! the bounded-load walk that keeps a hot key from overloading one backend ([`bounded`]).

pub(crate) mod bounded;
pub(crate) mod key;
pub(crate) mod maglev;
pub(crate) mod ring;
pub(crate) mod table;
