/// A list that keeps its first `N` items inline and moves to the heap only beyond them: the
/// arguments of a call are almost always few, and reading a frame should not allocate.
#[derive(Debug, Clone)]
pub(crate) struct SmallList<T, const N: usize> {
    inline: [T; N],
    len: usize,
    /// Every item, once there are more than `N` (then `inline` is unused).
    spill: Vec<T>,
}

impl<T: Default, const N: usize> Default for SmallList<T, N> {
    fn default() -> Self {
        SmallList {
            inline: std::array::from_fn(|_| T::default()),
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl<T: Default + Clone, const N: usize> SmallList<T, N> {
    /// `n` default items.
    pub fn filled(n: usize) -> Self {
        let mut list = Self::default();
        if n <= N {
            list.len = n;
        } else {
            list.spill = vec![T::default(); n];
            list.len = n;
        }
        list
    }

    // Inline: the frame reader pushes each argument, and out of line the call costs more
    // than the push (it stayed inline while the reader and the list shared a file).
    #[inline]
    pub fn push(&mut self, item: T) {
        if self.len < N {
            self.inline[self.len] = item;
        } else {
            if self.len == N {
                self.spill.clear();
                self.spill.extend(self.inline.iter().cloned());
            }
            self.spill.push(item);
        }
        self.len += 1;
    }

    /// Empties the list, keeping a spilled buffer for the next frame.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<T, const N: usize> std::ops::Deref for SmallList<T, N> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

impl<T, const N: usize> std::ops::DerefMut for SmallList<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        if self.len <= N {
            &mut self.inline[..self.len]
        } else {
            &mut self.spill
        }
    }
}
