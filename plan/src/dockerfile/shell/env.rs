//! Where the lexer looks variables up: BuildKit's `EnvGetter`, with Unix semantics (names are
//! case-sensitive, as in BuildKit's `equal_env_unix.go`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};

/// A set of variables the lexer can read. Names are compared exactly (Unix semantics).
pub trait EnvGetter {
    /// The value of `key`, or `None` when it is not defined. A variable defined as empty is
    /// `Some("")`, which `${name-default}` and `${name:-default}` tell apart.
    fn get(&self, key: &str) -> Option<&str>;

    /// The names defined, each once; used to suggest a name for an undefined one.
    fn keys(&self) -> Vec<&str>;
}

/// One `name=value` entry of a list of variables: a `(name, value)` pair, or a `"name=value"`
/// string as in an image config's `Env` (split at the first `=`; with no `=`, the whole string
/// is the name and the value is empty, as BuildKit's `EnvsFromSlice` reads it).
pub trait EnvEntry {
    /// The variable's name.
    fn key(&self) -> &str;
    /// The variable's value.
    fn value(&self) -> &str;
}

impl<K: AsRef<str>, V: AsRef<str>> EnvEntry for (K, V) {
    fn key(&self) -> &str {
        self.0.as_ref()
    }
    fn value(&self) -> &str {
        self.1.as_ref()
    }
}

fn split_entry(entry: &str) -> (&str, &str) {
    entry.split_once('=').unwrap_or((entry, ""))
}

impl EnvEntry for String {
    fn key(&self) -> &str {
        split_entry(self).0
    }
    fn value(&self) -> &str {
        split_entry(self).1
    }
}

impl EnvEntry for &str {
    fn key(&self) -> &str {
        split_entry(self).0
    }
    fn value(&self) -> &str {
        split_entry(self).1
    }
}

/// A list of entries: the last entry of a name wins, as in BuildKit's `EnvsFromSlice`.
impl<T: EnvEntry> EnvGetter for [T] {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter().rev().find(|e| e.key() == key).map(EnvEntry::value)
    }
    fn keys(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.iter().map(EnvEntry::key).filter(|k| seen.insert(*k)).collect()
    }
}

impl<T: EnvEntry> EnvGetter for Vec<T> {
    fn get(&self, key: &str) -> Option<&str> {
        EnvGetter::get(self.as_slice(), key)
    }
    fn keys(&self) -> Vec<&str> {
        EnvGetter::keys(self.as_slice())
    }
}

impl<T: EnvEntry, const N: usize> EnvGetter for [T; N] {
    fn get(&self, key: &str) -> Option<&str> {
        EnvGetter::get(self.as_slice(), key)
    }
    fn keys(&self) -> Vec<&str> {
        EnvGetter::keys(self.as_slice())
    }
}

/// Keys come out sorted.
impl<K: Borrow<str> + Ord, V: AsRef<str>> EnvGetter for BTreeMap<K, V> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(AsRef::as_ref)
    }
    fn keys(&self) -> Vec<&str> {
        BTreeMap::keys(self).map(Borrow::borrow).collect()
    }
}

/// Keys come out in the map's (arbitrary) order.
impl<K: Borrow<str> + Hash + Eq, V: AsRef<str>, S: BuildHasher> EnvGetter for HashMap<K, V, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(AsRef::as_ref)
    }
    fn keys(&self) -> Vec<&str> {
        HashMap::keys(self).map(Borrow::borrow).collect()
    }
}

impl<E: EnvGetter + ?Sized> EnvGetter for &E {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
    fn keys(&self) -> Vec<&str> {
        (**self).keys()
    }
}

/// No variables at all: what BuildKit's parser expands against when it looks for heredocs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoEnv;

impl EnvGetter for NoEnv {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }
    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}
