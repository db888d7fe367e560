//! Placeholder IPv4 LPM (hash per prefix length); replaced by DIR-24-8.
use hashbrown::HashMap;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LpmError {
    BadLength,
    BadValue,
}
#[derive(Clone, Default)]
pub struct Lpm4 {
    by_len: Vec<HashMap<u32, u32>>,
}
impl Lpm4 {
    pub fn new() -> Self {
        Lpm4 {
            by_len: vec![HashMap::new(); 33],
        }
    }
    fn mask(addr: u32, len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            addr & (!0u32 << (32 - len))
        }
    }
    pub fn insert(&mut self, addr: u32, len: u8, value: u32) -> Result<Option<u32>, LpmError> {
        if len > 32 {
            return Err(LpmError::BadLength);
        }
        if self.by_len.is_empty() {
            *self = Self::new()
        }
        Ok(self.by_len[len as usize].insert(Self::mask(addr, len), value))
    }
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        for len in (0..self.by_len.len()).rev() {
            if let Some(v) = self.by_len[len].get(&Self::mask(addr, len as u8)) {
                return Some(*v);
            }
        }
        None
    }
    #[inline]
    pub fn prefetch(&self, _addr: u32) {}
    pub fn len(&self) -> usize {
        self.by_len.iter().map(|m| m.len()).sum()
    }
}
