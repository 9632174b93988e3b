//! Names for containers started without `--name`: docker's adjective_noun form, picked by
//! the container's (random) ID, so that people can tell containers apart at a glance.

use crate::image::container;
use crate::image::store::Store;

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "quirky", "relaxed", "serene", "sharp", "stoic", "tender", "upbeat", "vibrant",
    "wizardly", "youthful", "zealous", "bold", "clever",
];

const NOUNS: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "hypatia", "kepler",
    "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon", "thompson", "turing",
    "wozniak", "yonath", "zuse", "lamport", "knuth", "dijkstra", "liskov",
];

/// An adjective_noun name no container of `st` has yet, chosen from the hex `id`; a number
/// is appended when the first choice is taken.
pub fn unused(st: &Store, id: &str) -> String {
    let n = u64::from_str_radix(&id[..id.len().min(12)], 16).unwrap_or(0);
    let base = format!(
        "{}_{}",
        ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize],
        NOUNS[(n / ADJECTIVES.len() as u64 % NOUNS.len() as u64) as usize]
    );
    let mut name = base.clone();
    let mut i = 1;
    while container::dir(st, &name).exists() {
        i += 1;
        name = format!("{base}{i}");
    }
    name
}
