//! Mutable state. Per-worker state (connection tracking, NAT bindings, token
//! buckets) is owned by exactly one worker and needs no locks; the neighbour
//! cache is the exception, shared and seqlock-protected (see its docs).

pub mod conntrack;
pub mod neighbour;
pub mod ratelimit;
