//! The index a change compiled, kept with the store it made, so that serving
//! that store does not compile it again ([`Store::compiled_index`]). A cache,
//! not state: never saved, ignored by equality, and given only while the store
//! still holds exactly what it was compiled from (its resources, in store
//! order, and its context keys), so a store changed afterwards is compiled anew.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_engine::context::ContextKey;
use switchyard_engine::{Index, Resource};

use super::Store;

/// The index compiled from a store, with what it was compiled from.
#[derive(Clone, Default)]
pub struct CompiledIndex(Option<Arc<Compiled>>);

struct Compiled {
    resources: BTreeMap<(String, String), Resource>,
    context_keys: Vec<ContextKey>,
    index: Arc<Index>,
}

impl CompiledIndex {
    /// `index`, compiled from `store` (its resources in store order, its settings).
    pub(super) fn of(store: &Store, index: Index) -> Self {
        Self(Some(Arc::new(Compiled {
            resources: store.resources.clone(),
            context_keys: store.context_keys.clone(),
            index: Arc::new(index),
        })))
    }

    /// The index, if `store` still holds what it was compiled from.
    pub(super) fn get(&self, store: &Store) -> Option<Arc<Index>> {
        let c = self.0.as_ref()?;
        let same = c.resources == store.resources && c.context_keys == store.context_keys;
        same.then(|| c.index.clone())
    }
}

/// A cache: two stores are equal whatever they have compiled.
impl PartialEq for CompiledIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompiledIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "CompiledIndex(..)",
            None => "CompiledIndex(none)",
        })
    }
}
