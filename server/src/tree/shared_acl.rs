//! ACL lists shared between znodes, as ZooKeeper's `ReferenceCountedACLCache` shares them: a
//! tree has few distinct ACLs (`world:anyone`, a namespace's `k8s:ns:<ns>`, a user's digest) and
//! many nodes, so each node holds a reference to its list instead of a copy of it — 16 bytes
//! instead of a vector, its entries and their strings.
//!
//! [`AclCache`] interns lists. It is not part of the replicated state: serialized trees carry
//! every node's list, as before (the bytes are the same), and a tree being deserialized interns
//! what it reads through [`Interning`], so a restored tree shares its lists too. Lists no node
//! holds any more are dropped from the cache as it grows.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serializer};

use crate::proto::Acl;

/// A znode's ACL list, shared with every node that has the same one.
pub type SharedAcl = Arc<[Acl]>;

/// The distinct ACL lists of a tree. Clones share one cache, so copying a tree for a snapshot
/// stays O(1) (the copy writes nothing; what either interns, both find).
#[derive(Clone, Debug, Default)]
pub struct AclCache {
    lists: Arc<Mutex<Lists>>,
}

#[derive(Debug, Default)]
struct Lists {
    lists: HashSet<SharedAcl>,
    /// Its size when lists no longer held were last dropped.
    kept: usize,
}

/// Lists held by the cache alone are dropped once it has grown to this many, or twice what it
/// kept the last time, whichever is more.
const PRUNE_FROM: usize = 64;

impl AclCache {
    /// The shared list equal to `acl`, made when the tree has none yet.
    pub fn intern(&self, acl: &[Acl]) -> SharedAcl {
        let mut cache = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = cache.lists.get(acl) {
            return shared.clone();
        }
        if cache.lists.len() >= PRUNE_FROM.max(2 * cache.kept) {
            cache.lists.retain(|list| Arc::strong_count(list) > 1);
            cache.kept = cache.lists.len();
        }
        let shared: SharedAcl = Arc::from(acl);
        cache.lists.insert(shared.clone());
        shared
    }

    /// How many distinct lists it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lists.lock().unwrap_or_else(|e| e.into_inner()).lists.len()
    }
}

/// Not part of a tree's state: two trees with the same nodes are equal whatever they cached.
impl PartialEq for AclCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for AclCache {}

thread_local! {
    /// The cache of the tree being deserialized on this thread, if one is.
    static INTERNING: RefCell<Option<AclCache>> = const { RefCell::new(None) };
}

/// While it lives, ACL lists deserialized on this thread ([`deserialize`]) are interned in one
/// cache, which [`Interning::finish`] hands over to the tree that was read.
pub struct Interning {
    /// What the thread had before: put back when this ends, finished or not.
    outer: Option<Option<AclCache>>,
}

impl Interning {
    /// Starts interning on this thread (one begun inside another keeps its cache apart).
    pub fn begin() -> Interning {
        Interning { outer: Some(INTERNING.with(|cell| cell.replace(Some(AclCache::default())))) }
    }

    /// The cache of everything interned since [`Interning::begin`].
    pub fn finish(mut self) -> AclCache {
        let outer = self.outer.take().flatten();
        INTERNING.with(|cell| cell.replace(outer)).unwrap_or_default()
    }
}

impl Drop for Interning {
    /// Not finished (the deserialization failed): what the thread had is put back.
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            INTERNING.with(|cell| cell.replace(outer));
        }
    }
}

/// Serializes a shared list as the list it is (what a `Vec<Acl>` field wrote).
pub fn serialize<S: Serializer>(acl: &SharedAcl, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(acl.iter())
}

/// Deserializes a list, interned in the cache of the tree being read when there is one.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SharedAcl, D::Error> {
    let acl = Vec::<Acl>::deserialize(deserializer)?;
    Ok(INTERNING.with(|cell| match cell.borrow().as_ref() {
        Some(cache) => cache.intern(&acl),
        None => Arc::from(acl),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{perms, Id};

    fn acl(id: &str) -> Vec<Acl> {
        vec![Acl { perms: perms::ALL, id: Id::new("digest", id) }]
    }

    #[test]
    fn equal_lists_are_one_and_lists_no_node_holds_are_dropped_as_the_cache_grows() {
        let cache = AclCache::default();
        let a = cache.intern(&acl("a"));
        let again = cache.intern(&acl("a"));
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &cache.intern(&acl("b"))));
        // Lists made and let go: the cache does not keep them all.
        for i in 0..1000 {
            drop(cache.intern(&acl(&format!("gone-{i}"))));
        }
        assert!(cache.len() <= 2 * PRUNE_FROM, "{}", cache.len());
        assert!(Arc::ptr_eq(&a, &cache.intern(&acl("a"))), "a list still held stays shared");
    }

    #[test]
    fn a_deserialization_interns_in_its_own_cache() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Holder(
            #[serde(serialize_with = "serialize", deserialize_with = "deserialize")] SharedAcl,
            #[serde(serialize_with = "serialize", deserialize_with = "deserialize")] SharedAcl,
        );
        let shared: SharedAcl = Arc::from(acl("a"));
        let bytes = postcard::to_allocvec(&Holder(shared.clone(), shared)).expect("encode");
        assert_eq!(bytes, postcard::to_allocvec(&(acl("a"), acl("a"))).expect("as vectors"), "the same bytes");

        let scope = Interning::begin();
        let Holder(x, y) = postcard::from_bytes(&bytes).expect("decode");
        let cache = scope.finish();
        assert!(Arc::ptr_eq(&x, &y));
        assert_eq!(cache.len(), 1);

        // Outside a tree's deserialization nothing is cached.
        let Holder(x, y) = postcard::from_bytes(&bytes).expect("decode");
        assert!(!Arc::ptr_eq(&x, &y));
        INTERNING.with(|cell| assert!(cell.borrow().is_none()));
    }
}
