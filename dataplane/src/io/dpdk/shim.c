/*
 * Sluice's shim over DPDK's static inline functions.
 *
 * rte_eth_rx_burst, rte_eth_tx_burst, the mbuf accessors and the mempool
 * cache functions are inline in DPDK's headers, so Rust cannot call them
 * through the shared libraries. This file wraps the few the DPDK port needs,
 * and does whole bursts per call: one call across the language boundary per
 * burst, not per packet. Everything that touches struct layouts (mbufs,
 * rte_eth_conf, rte_eth_link) stays here, so the Rust side declares only
 * the small structs below.
 *
 * Buffers are named by their data buffer address (mbuf->buf_addr). The
 * mbuf header sits immediately before it because the pool is created with
 * no private area, which is what lets a Sluice Packet carry an mbuf without
 * any extra field.
 */

#include <stdint.h>
#include <string.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define SLUICE_MAX_BURST 64

/* Flags of sluice_rx_view.flags. */
#define SLUICE_RX_FOREIGN 1u  /* not a single-segment buffer of the pool */
#define SLUICE_RX_SEGMENTS 2u /* a chained (multi-segment) packet */

struct sluice_rx_view {
	void *buf;
	uint16_t data_off;
	uint16_t data_len;
	uint16_t flags;
	uint16_t reserved;
	uint32_t rss;
	uint32_t reserved2;
};

struct sluice_tx_view {
	void *buf;
	uint16_t data_off;
	uint16_t data_len;
	uint32_t reserved;
};

struct sluice_port_info {
	uint8_t mac[6];
	uint16_t mtu;
	uint32_t speed_mbps;
	uint16_t max_rx_queues;
	uint16_t max_tx_queues;
	uint8_t link_up;
	uint8_t reserved[3];
};

static inline struct rte_mbuf *mbuf_of(void *buf)
{
	return (struct rte_mbuf *)((char *)buf - sizeof(struct rte_mbuf));
}

int sluice_errno(void) { return rte_errno; }

uint32_t sluice_mbuf_header_size(void) { return sizeof(struct rte_mbuf); }

uint32_t sluice_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }

struct rte_mempool *sluice_pool_create(const char *name, uint32_t n,
				       uint32_t cache, uint16_t data_room)
{
	return rte_pktmbuf_pool_create(name, n, cache, 0, data_room,
				       (int)rte_socket_id());
}

uint32_t sluice_pool_available(const struct rte_mempool *mp)
{
	return rte_mempool_avail_count(mp);
}

int sluice_port_configure(uint16_t port, uint16_t nrx, uint16_t ntx,
			  uint16_t nrxd, uint16_t ntxd, struct rte_mempool *mp)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	int rc, socket;
	uint16_t q;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	if (nrx > 1 && info.flow_type_rss_offloads != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf =
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) &
			info.flow_type_rss_offloads;
	}
	rc = rte_eth_dev_configure(port, nrx, ntx, &conf);
	if (rc != 0)
		return rc;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (rc != 0)
		return rc;
	socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = SOCKET_ID_ANY;
	for (q = 0; q < nrx; q++) {
		rc = rte_eth_rx_queue_setup(port, q, nrxd, (unsigned)socket,
					    NULL, mp);
		if (rc != 0)
			return rc;
	}
	for (q = 0; q < ntx; q++) {
		rc = rte_eth_tx_queue_setup(port, q, ntxd, (unsigned)socket,
					    NULL);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int sluice_port_info(uint16_t port, struct sluice_port_info *out)
{
	struct rte_ether_addr mac;
	struct rte_eth_link link;
	struct rte_eth_dev_info info;
	uint16_t mtu = 1500;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = rte_eth_macaddr_get(port, &mac);
	if (rc != 0)
		return rc;
	memcpy(out->mac, mac.addr_bytes, 6);
	if (rte_eth_dev_get_mtu(port, &mtu) == 0)
		out->mtu = mtu;
	else
		out->mtu = 1500;
	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(port, &link) == 0) {
		out->link_up = link.link_status == RTE_ETH_LINK_UP;
		out->speed_mbps = link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN
					  ? 0
					  : link.link_speed;
	}
	if (rte_eth_dev_info_get(port, &info) == 0) {
		out->max_rx_queues = info.max_rx_queues;
		out->max_tx_queues = info.max_tx_queues;
	}
	return 0;
}

/* Frames the device lost before software saw them. */
uint64_t sluice_port_missed(uint16_t port)
{
	struct rte_eth_stats s;

	if (rte_eth_stats_get(port, &s) != 0)
		return 0;
	return s.imissed + s.rx_nombuf;
}

/*
 * Receives up to n packets and describes each. A packet is FOREIGN when it
 * is not a plain single-segment buffer of `mp` (the caller copies it or
 * drops it, and gives the mbuf back with sluice_mbuf_free).
 */
uint16_t sluice_rx_burst(uint16_t port, uint16_t queue,
			 const struct rte_mempool *mp,
			 struct sluice_rx_view *views, uint16_t n)
{
	struct rte_mbuf *pkts[SLUICE_MAX_BURST];
	uint16_t got, i;

	if (n > SLUICE_MAX_BURST)
		n = SLUICE_MAX_BURST;
	got = rte_eth_rx_burst(port, queue, pkts, n);
	for (i = 0; i < got; i++) {
		struct rte_mbuf *m = pkts[i];
		struct sluice_rx_view *v = &views[i];
		uint16_t flags = 0;

		if (m->nb_segs != 1)
			flags |= SLUICE_RX_SEGMENTS | SLUICE_RX_FOREIGN;
		if (m->pool != mp || RTE_MBUF_CLONED(m) ||
		    RTE_MBUF_HAS_EXTBUF(m) || rte_mbuf_refcnt_read(m) != 1 ||
		    m->buf_addr != (void *)(m + 1))
			flags |= SLUICE_RX_FOREIGN;
		v->buf = m->buf_addr;
		v->data_off = m->data_off;
		v->data_len = m->data_len;
		v->flags = flags;
		v->rss = (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) ? m->hash.rss
								 : 0;
	}
	return got;
}

/*
 * Sets each buffer's frame window and transmits. Every view must name a
 * single-segment buffer of a pool created by sluice_pool_create. Returns
 * how many the device took (a prefix); the rest still belong to the caller.
 */
uint16_t sluice_tx_burst(uint16_t port, uint16_t queue,
			 const struct sluice_tx_view *views, uint16_t n)
{
	struct rte_mbuf *pkts[SLUICE_MAX_BURST];
	uint16_t i;

	if (n > SLUICE_MAX_BURST)
		n = SLUICE_MAX_BURST;
	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = mbuf_of(views[i].buf);

		/*
		 * Only the first cache line is written: nb_segs is 1 and next
		 * NULL already (the receive side checked, and fresh mbufs are
		 * reset), and next lives in the second line.
		 */
		m->data_off = views[i].data_off;
		m->data_len = views[i].data_len;
		m->pkt_len = views[i].data_len;
		/* No offloads are requested; keep only the buffer-kind bits. */
		m->ol_flags &= RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL;
		pkts[i] = m;
	}
	return rte_eth_tx_burst(port, queue, pkts, n);
}

/* A fresh buffer of `mp`, named by its data buffer; NULL when empty. */
void *sluice_mbuf_alloc(struct rte_mempool *mp)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(mp);

	return m == NULL ? NULL : m->buf_addr;
}

/* Frees the packet whose data buffer is `buf` (any segments included). */
void sluice_mbuf_free(void *buf)
{
	rte_pktmbuf_free(mbuf_of(buf));
}

/*
 * Gives a thread that EAL did not start an lcore id, so mempool
 * operations on it use a per-lcore cache instead of the shared ring.
 * Returns 1 when it registered the thread, 0 when the thread already had
 * an id (the main lcore, or registered before), -1 when no id was free.
 * The thread's CPU affinity is left as it is.
 */
int sluice_thread_register(void)
{
	if (rte_lcore_id() != LCORE_ID_ANY)
		return 0;
	return rte_thread_register() == 0 ? 1 : -1;
}

/* Returns the thread's cached buffers of `mp` and releases its lcore id. */
void sluice_thread_unregister(struct rte_mempool *mp)
{
	unsigned int id = rte_lcore_id();
	struct rte_mempool_cache *cache;

	if (id == LCORE_ID_ANY)
		return;
	cache = rte_mempool_default_cache(mp, id);
	if (cache != NULL)
		rte_mempool_cache_flush(cache, mp);
	rte_thread_unregister();
}
