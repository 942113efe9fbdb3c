//! Docker's generated container names (`adjective_surname`, as docker's names-generator):
//! what a container made without `--name` is called besides its 64-hex id, kept in its
//! annotations ([`NAME_ANNOTATION`]) and unique among the containers of a state root.
//!
//! Only `run` gives one (a container of an image or a root directory without `--name`); a
//! caller's id (`create ID`, `run ID` of a bundle: containerd, podman) is its name, and such
//! containers get no annotation.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::anyhow;
use nix::fcntl::{Flock, FlockArg};

use crate::{Error, Result, Runtime};

/// The annotation holding a container's generated name.
pub const NAME_ANNOTATION: &str = "io.peapod.name";

/// How many random picks are tried before a digit is added, as docker's generator does.
const PICKS: usize = 8;

// peapod's own word lists, in the spirit of docker's names (an adjective, then the surname
// of a scientist or mathematician): 87 x 87 names before a digit is added.
#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "able", "agile", "amber", "ample", "azure", "balmy", "bright", "brisk", "bubbly", "calm",
    "candid", "cheery", "civil", "clear", "cosy", "crisp", "curious", "daring", "deft", "eager",
    "early", "earnest", "even", "fair", "fancy", "fond", "frank", "free", "fresh", "gentle",
    "glad", "golden", "grand", "hardy", "hearty", "honest", "humble", "jaunty", "jolly", "keen",
    "kind", "lively", "loyal", "lucky", "mellow", "merry", "mighty", "modest", "neat", "nimble",
    "noble", "patient", "placid", "plucky", "polite", "proud", "quick", "quiet", "rapid", "ready",
    "robust", "rosy", "rustic", "serene", "sharp", "shiny", "silent", "sincere", "smart", "snug",
    "sober", "solid", "spry", "steady", "sturdy", "sunny", "swift", "tidy", "tranquil", "trusty",
    "upbeat", "valiant", "vivid", "warm", "wise", "witty", "zesty",
];

#[rustfmt::skip]
const SURNAMES: &[&str] = &[
    "abel", "ada", "agassiz", "ampere", "aristarchus", "avogadro", "bayes", "bernoulli", "bessel",
    "boole", "born", "boyle", "bragg", "brahe", "cantor", "cardano", "carnot", "cauchy",
    "cavendish", "celsius", "coulomb", "crick", "dalton", "dedekind", "democritus", "descartes",
    "doppler", "eratosthenes", "fibonacci", "fourier", "fresnel", "galvani", "gibbs", "godel",
    "goeppert", "hamming", "hardy", "hilbert", "hooke", "huygens", "jacobi", "joule", "kelvin",
    "kirchhoff", "klein", "kovalevskaya", "lagrange", "laplace", "lavoisier", "leibniz", "lorentz",
    "lovelace", "lyell", "maxwell", "meitner", "mendel", "mirzakhani", "mobius", "napier",
    "neumann", "newton", "noether", "ohm", "pascal", "pasteur", "pauli", "planck", "poincare",
    "ramanujan", "riemann", "rutherford", "shannon", "snell", "somerville", "stokes", "tesla",
    "thales", "turing", "venn", "volta", "wallace", "watt", "weierstrass", "wiles", "wu", "yukawa",
    "zuse",
];

/// The lock that makes choosing a name and creating its container one step against other
/// `run`s of the same state root: held from [`generate`] until the container's record (with
/// the name) is written, then dropped. It is a `flock` of the state root directory itself,
/// which nothing else locks, so that it leaves no file behind.
#[derive(Debug)]
pub struct NameLock {
    _lock: Flock<File>,
}

/// A name no container of `rt` has (neither as its id nor as its generated name), with the
/// lock to hold until the container that takes it is recorded.
pub fn generate(rt: &Runtime) -> Result<(String, NameLock)> {
    let lock = lock(rt)?;
    let taken = taken(rt)?;
    let mut random = random_words();
    for attempt in 0.. {
        let adjective = ADJECTIVES[random() % ADJECTIVES.len()];
        let surname = SURNAMES[random() % SURNAMES.len()];
        let mut name = format!("{adjective}_{surname}");
        // As docker's: after some tries, a digit added makes a clash unlikely.
        if attempt >= PICKS {
            name.push_str(&(random() % 10).to_string());
        }
        if !taken.contains(&name) {
            return Ok((name, lock));
        }
        if attempt >= PICKS * 4 {
            break;
        }
    }
    Err(Error::runtime(anyhow!(
        "cannot find an unused container name: give one with --name"
    )))
}

/// Whether `text` has the form of a generated name (`word_word`, a digit perhaps), which
/// no hex id prefix has: only such names are looked up by annotation.
pub fn could_be_generated(text: &str) -> bool {
    let Some((adjective, surname)) = text.split_once('_') else {
        return false;
    };
    let surname = surname.trim_end_matches(|c: char| c.is_ascii_digit());
    [adjective, surname]
        .iter()
        .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The id of the container whose generated name is `name`, if one has it.
pub fn find(rt: &Runtime, name: &str) -> Result<Option<String>> {
    if !could_be_generated(name) || !rt.root.exists() {
        return Ok(None);
    }
    Ok(named(rt)?
        .into_iter()
        .find(|(_, n)| n.as_deref() == Some(name))
        .map(|(id, _)| id))
}

/// Every id and generated name of `rt`'s containers.
fn taken(rt: &Runtime) -> Result<HashSet<String>> {
    Ok(named(rt)?
        .into_iter()
        .flat_map(|(id, name)| std::iter::once(id).chain(name))
        .collect())
}

/// Each container's id and generated name, if it has one (a container deleted meanwhile,
/// or not yet recorded, has none).
fn named(rt: &Runtime) -> Result<Vec<(String, Option<String>)>> {
    let store = rt.store()?;
    Ok(store
        .ids()?
        .into_iter()
        .map(|id| {
            let name = store
                .load(&id)
                .ok()
                .and_then(|entry| entry.record().ok().flatten())
                .and_then(|record| record.annotations.get(NAME_ANNOTATION).cloned());
            (id.to_string(), name)
        })
        .collect())
}

fn lock(rt: &Runtime) -> Result<NameLock> {
    // Made and checked as every command makes it.
    let store = rt.store()?;
    let root = store.root();
    let io = |e: std::io::Error| Error::runtime(anyhow!("cannot lock {}: {e}", root.display()));
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root)
        .map_err(io)?;
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io(e.into()))?;
    Ok(NameLock { _lock: lock })
}

/// Random numbers from the kernel (through a generated id's 32 random bytes), fetched
/// again as they run out.
fn random_words() -> impl FnMut() -> usize {
    let mut pool: Vec<usize> = Vec::new();
    move || {
        if pool.is_empty() {
            let hex = crate::flags::generated_id();
            pool = hex
                .as_bytes()
                .chunks(4)
                .filter_map(|c| usize::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
                .collect();
            if pool.is_empty() {
                // The fallback id (PID and time) has no hex to read: its length varies.
                pool.push(hex.len() * 7919 + std::process::id() as usize);
            }
        }
        pool.pop().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_shapes_are_told_from_ids_and_prefixes() {
        assert!(could_be_generated("happy_turing"));
        assert!(could_be_generated("happy_turing7"));
        assert!(!could_be_generated("0123abc"));
        assert!(!could_be_generated("web"));
        assert!(!could_be_generated("Happy_turing"));
        assert!(!could_be_generated("happy_"));
        assert!(!could_be_generated("a_b_c"));
    }

    #[test]
    fn every_word_makes_a_valid_name() {
        for word in ADJECTIVES.iter().chain(SURNAMES) {
            assert!(could_be_generated(&format!("{word}_{word}")), "{word}");
        }
    }
}
