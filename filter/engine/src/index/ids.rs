//! Named positions in the compiled table: an id per kind of entry, and
//! [`Entries`], a list that only its own kind of id can index. A deployment id
//! cannot be used where a virtual environment's is meant.

use std::fmt;
use std::marker::PhantomData;

/// A position in one kind of [`Entries`].
pub(crate) trait Id: Copy {
    fn from_position(position: usize) -> Self;
    fn position(self) -> usize;
}

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) struct $name(usize);

        impl Id for $name {
            #[inline]
            fn from_position(position: usize) -> Self {
                Self(position)
            }
            #[inline]
            fn position(self) -> usize {
                self.0
            }
        }
    )*};
}

ids! {
    /// An Environment.
    EnvironmentId;
    /// A VirtualEnvironment.
    VirtualEnvironmentId;
    /// An AppDeployment.
    DeploymentId;
    /// A component of one deployment (its position in the deployment's components).
    ComponentId;
    /// A route of one deployment (its position in the deployment's routes).
    RouteId;
    /// A distilled cluster ([`crate::ClusterSpec`]).
    ClusterId;
    /// A compiled Canary.
    CanaryId;
}

/// One route of one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeploymentRoute {
    pub deployment: DeploymentId,
    pub route: RouteId,
}

/// The entries of one kind, indexed by their id.
pub(crate) struct Entries<I, T> {
    items: Vec<T>,
    id: PhantomData<fn(I) -> I>,
}

impl<I: Id, T> Entries<I, T> {
    /// Adds an entry and returns its id.
    pub fn push(&mut self, item: T) -> I {
        let id = I::from_position(self.items.len());
        self.items.push(item);
        id
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn as_slice(&self) -> &[T] {
        &self.items
    }
}

impl<I, T> Default for Entries<I, T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            id: PhantomData,
        }
    }
}

impl<I, T: fmt::Debug> fmt::Debug for Entries<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.items.fmt(f)
    }
}

impl<I: Id, T> std::ops::Index<I> for Entries<I, T> {
    type Output = T;
    #[inline]
    fn index(&self, id: I) -> &T {
        &self.items[id.position()]
    }
}

impl<I: Id, T> std::ops::IndexMut<I> for Entries<I, T> {
    #[inline]
    fn index_mut(&mut self, id: I) -> &mut T {
        &mut self.items[id.position()]
    }
}
