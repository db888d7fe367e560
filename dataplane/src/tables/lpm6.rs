//! Placeholder IPv6 LPM (hash per prefix length); replaced by the real one.
pub use super::lpm4::LpmError;
use hashbrown::HashMap;
#[derive(Clone, Default)]
pub struct Lpm6 {
    by_len: Vec<HashMap<u128, u32>>,
}
impl Lpm6 {
    pub fn new() -> Self {
        Lpm6 {
            by_len: vec![HashMap::new(); 129],
        }
    }
    fn mask(addr: u128, len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            addr & (!0u128 << (128 - len))
        }
    }
    pub fn insert(&mut self, addr: u128, len: u8, value: u32) -> Result<Option<u32>, LpmError> {
        if len > 128 {
            return Err(LpmError::BadLength);
        }
        if self.by_len.is_empty() {
            *self = Self::new()
        }
        Ok(self.by_len[len as usize].insert(Self::mask(addr, len), value))
    }
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        for len in (0..self.by_len.len()).rev() {
            if let Some(v) = self.by_len[len].get(&Self::mask(addr, len as u8)) {
                return Some(*v);
            }
        }
        None
    }
    pub fn len(&self) -> usize {
        self.by_len.iter().map(|m| m.len()).sum()
    }
}
