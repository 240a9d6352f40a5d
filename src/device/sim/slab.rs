//! A vector of slots with reusable ids: the table of memory objects and of devmem allocations,
//! indexed in O(1) on the per-page paths. Ids are reused last-freed first, deterministically.

use std::ops::{Index, IndexMut};

#[derive(Debug)]
pub(super) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(value);
                id
            }
            None => {
                self.slots.push(Some(value));
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.slots.get_mut(id as usize)?.take();
        if value.is_some() {
            self.free.push(id);
        }
        value
    }

    pub fn get(&self, id: u32) -> Option<&T> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// Every live entry, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().flatten()
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Indexing is for ids the sim itself holds (an allocation's object, a page's devmem
/// allocation); a missing one is a bug in the sim, not something a case can cause.
impl<T> Index<u32> for Slab<T> {
    type Output = T;
    fn index(&self, id: u32) -> &T {
        match self.get(id) {
            Some(v) => v,
            None => panic!("sim bug: slab id {id} is not live"),
        }
    }
}

impl<T> IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, id: u32) -> &mut T {
        match self.slots.get_mut(id as usize).and_then(Option::as_mut) {
            Some(v) => v,
            None => panic!("sim bug: slab id {id} is not live"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_last_freed_first() {
        let mut s = Slab::default();
        let a = s.insert('a');
        let b = s.insert('b');
        let c = s.insert('c');
        assert_eq!(s.remove(a), Some('a'));
        assert_eq!(s.remove(c), Some('c'));
        assert_eq!(s.remove(c), None);
        assert_eq!(s.insert('d'), c);
        assert_eq!(s.insert('e'), a);
        assert_eq!(s[b], 'b');
        assert_eq!(s.len(), 3);
    }
}
