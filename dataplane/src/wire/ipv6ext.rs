//! (placeholder until merged)
#[derive(Debug, Clone, Copy)]
pub struct FragmentInfo { pub offset: u16, pub more: bool, pub ident: u32 }
#[derive(Debug, Clone, Copy)]
pub struct ExtChain { pub upper_protocol: u8, pub upper_offset: usize, pub fragment: Option<FragmentInfo>, pub count: u8 }
pub fn walk(_first: u8, _buf: &[u8]) -> super::Result<ExtChain> { Err(super::Error::Unsupported) }
