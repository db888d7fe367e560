//! The C functions the DPDK port calls: a few exported DPDK functions, and
//! the shim (`shim.c`) over the inline ones. Hand-written rather than
//! generated, so building needs no libclang; the structs here mirror the
//! shim's own, never DPDK's.

use core::ffi::{c_char, c_int};

/// `struct rte_mempool`, only ever behind a pointer.
#[repr(C)]
pub struct RteMempool {
    _opaque: [u8; 0],
}

/// `sluice_rx_view.flags`: not a plain single-segment buffer of our pool.
pub const RX_FOREIGN: u16 = 1;
/// `sluice_rx_view.flags`: a chained (multi-segment) packet.
pub const RX_SEGMENTS: u16 = 2;

/// `struct sluice_rx_view`: one received packet.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RxView {
    /// The data buffer (`mbuf->buf_addr`): names the packet.
    pub buf: *mut u8,
    pub data_off: u16,
    pub data_len: u16,
    pub flags: u16,
    pub reserved: u16,
    pub rss: u32,
    pub reserved2: u32,
}

impl Default for RxView {
    fn default() -> Self {
        RxView {
            buf: core::ptr::null_mut(),
            data_off: 0,
            data_len: 0,
            flags: 0,
            reserved: 0,
            rss: 0,
            reserved2: 0,
        }
    }
}

/// `struct sluice_tx_view`: one packet to send.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TxView {
    pub buf: *mut u8,
    pub data_off: u16,
    pub data_len: u16,
    pub reserved: u32,
}

impl Default for TxView {
    fn default() -> Self {
        TxView {
            buf: core::ptr::null_mut(),
            data_off: 0,
            data_len: 0,
            reserved: 0,
        }
    }
}

// SAFETY: views are scratch space of one queue handle, filled and consumed
// within one burst call; moving the handle (and them) to another thread
// between bursts moves no ownership of any buffer.
unsafe impl Send for RxView {}
// SAFETY: as for RxView.
unsafe impl Send for TxView {}

/// `struct sluice_port_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PortInfoC {
    pub mac: [u8; 6],
    pub mtu: u16,
    pub speed_mbps: u32,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub link_up: u8,
    pub reserved: [u8; 3],
}

extern "C" {
    // DPDK (exported functions).
    pub fn rte_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    pub fn rte_strerror(errnum: c_int) -> *const c_char;
    pub fn rte_dev_probe(devargs: *const c_char) -> c_int;
    pub fn rte_eth_dev_get_port_by_name(name: *const c_char, port_id: *mut u16) -> c_int;
    pub fn rte_eth_dev_start(port_id: u16) -> c_int;
    pub fn rte_eth_dev_stop(port_id: u16) -> c_int;
    pub fn rte_eth_promiscuous_enable(port_id: u16) -> c_int;

    // The shim.
    pub fn sluice_errno() -> c_int;
    pub fn sluice_mbuf_header_size() -> u32;
    pub fn sluice_pktmbuf_headroom() -> u32;
    pub fn sluice_pool_create(
        name: *const c_char,
        n: u32,
        cache: u32,
        data_room: u16,
    ) -> *mut RteMempool;
    pub fn sluice_pool_available(mp: *const RteMempool) -> u32;
    pub fn sluice_port_configure(
        port: u16,
        nrx: u16,
        ntx: u16,
        nrxd: u16,
        ntxd: u16,
        mp: *mut RteMempool,
    ) -> c_int;
    pub fn sluice_port_info(port: u16, out: *mut PortInfoC) -> c_int;
    pub fn sluice_port_missed(port: u16) -> u64;
    pub fn sluice_rx_burst(
        port: u16,
        queue: u16,
        mp: *const RteMempool,
        views: *mut RxView,
        n: u16,
    ) -> u16;
    pub fn sluice_tx_burst(port: u16, queue: u16, views: *const TxView, n: u16) -> u16;
    pub fn sluice_mbuf_alloc(mp: *mut RteMempool) -> *mut u8;
    pub fn sluice_mbuf_free(buf: *mut u8);
    pub fn sluice_thread_register() -> c_int;
    pub fn sluice_thread_unregister(mp: *mut RteMempool);
}

/// DPDK's text for an error number (positive errno or `rte_errno`).
pub fn strerror(errnum: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string, valid until the next call on this thread; it is
    // copied at once.
    unsafe {
        let p = rte_strerror(errnum.abs());
        if p.is_null() {
            return format!("error {errnum}");
        }
        core::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

// The shim's structs, checked against the sizes C gives them.
const _: () = assert!(core::mem::size_of::<RxView>() == 24);
const _: () = assert!(core::mem::size_of::<TxView>() == 16);
const _: () = assert!(core::mem::size_of::<PortInfoC>() == 20);
