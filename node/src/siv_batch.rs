//! AES-SIV (RFC 5297) over a batch of packets under one key, their CMAC chains interleaved.
//!
//! AES-SIV authenticates with S2V, which is CMAC: a chain in which every AES call waits
//! for the one before, so one packet keeps the AES unit mostly idle (an AES-NI round takes
//! a few cycles to finish, but the unit can start a new one every cycle). The packets of a
//! batch are independent chains: block `j` of every packet is encrypted in one call
//! (`encrypt_blocks`, which AES-NI runs 8 blocks wide). The CTR half is parallel within a
//! packet already. A token visit's frames, sealed together, and a burst of received
//! frames from one sender, opened together, are such batches.
//!
//! The result is bit for bit the `aes-siv` crate's (tests below, over random batches), and
//! a lone packet still goes through that crate. Only the AES block function is used here,
//! from the `aes` crate.

use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit, ParBlocks,
};

type Block = [u8; 16];

/// The two halves of an AES-SIV key, ready for batches.
pub struct SivBatch<C> {
    mac: C,
    ctr: C,
    /// CMAC subkeys (RFC 4493): for a complete and for a padded last block.
    k1: Block,
    k2: Block,
    /// CMAC of the zero block, where every S2V starts.
    d0: Block,
}

impl<C> std::fmt::Debug for SivBatch<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SivBatch")
    }
}

/// One packet of a batch: S2V's two associated strings and the body, encrypted or
/// decrypted in place.
#[derive(Debug)]
pub struct Item<'a> {
    pub header: &'a [u8],
    pub nonce: &'a [u8],
    pub body: &'a mut [u8],
}

#[inline]
fn xor(a: &Block, b: &Block) -> Block {
    (u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b)).to_ne_bytes()
}

/// Doubling in GF(2^128) (RFC 5297 §2.3).
fn dbl(b: &Block) -> Block {
    let v = u128::from_be_bytes(*b);
    ((v << 1) ^ if v >> 127 == 1 { 0x87 } else { 0 }).to_be_bytes()
}

/// A message for [`SivBatch::cmac`]: its bytes, and S2V's "xorend" of a block into its last
/// 16 bytes (the message is then at least 16 bytes long).
struct Msg<'a> {
    bytes: &'a [u8],
    xorend: Option<Block>,
}

impl Msg<'_> {
    fn blocks(&self) -> usize {
        self.bytes.len().div_ceil(16).max(1)
    }

    /// Leading blocks that are whole, not the last, and clear of the xorend: taken as they are.
    fn plain_blocks(&self) -> usize {
        self.bytes.len().saturating_sub(16) / 16
    }

    /// Block `j`, with the xorend applied and, for a short last block, the 10* padding. Only
    /// for the blocks after [`Msg::plain_blocks`] (the last one or two), which
    /// [`SivBatch::cmac`] takes as they are.
    #[inline]
    fn block(&self, j: usize) -> Block {
        let len = self.bytes.len();
        let start = j * 16;
        let part = self.bytes.get(start..len.min(start + 16)).unwrap_or_default();
        let mut b = [0u8; 16];
        b[..part.len()].copy_from_slice(part);
        if let Some(d) = &self.xorend {
            let from = len.saturating_sub(16);
            for (k, byte) in b.iter_mut().enumerate().take(part.len()) {
                if let Some(di) = (start + k).checked_sub(from) {
                    *byte ^= d[di];
                }
            }
        }
        if part.len() < 16 {
            b[part.len()] = 0x80;
        }
        b
    }
}

impl<C: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16> + KeyInit> SivBatch<C> {
    /// From an AES-SIV key: the S2V (CMAC) key, then the CTR key, of equal length.
    pub fn new(key: &[u8]) -> Option<SivBatch<C>> {
        let (mac, ctr) = key.split_at(key.len() / 2);
        let mac = C::new_from_slice(mac).ok()?;
        let ctr = C::new_from_slice(ctr).ok()?;
        let mut l = aes::Block::default();
        mac.encrypt_block(&mut l);
        let k1 = dbl(&l.into());
        let k2 = dbl(&k1);
        let mut d0 = aes::Block::from(k1);
        mac.encrypt_block(&mut d0);
        Some(SivBatch { mac, ctr, k1, k2, d0: d0.into() })
    }

    /// CMAC of every message, the chains run side by side, all through one backend call
    /// (see [`encrypt_all`]).
    fn cmac(&self, msgs: &[Msg<'_>]) -> Vec<Block> {
        let mut tags = Vec::new();
        self.mac.encrypt_with_backend(WithBackend(|b: &dyn Fn(&mut [aes::Block])| {
            tags = self.cmac_with(msgs, b);
        }));
        tags
    }

    fn cmac_with(&self, msgs: &[Msg<'_>], encrypt: &dyn Fn(&mut [aes::Block])) -> Vec<Block> {
        // Longest first, so that the lanes still running are always a prefix.
        let mut order: Vec<usize> = (0..msgs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(msgs[i].plain_blocks()));
        let plain: Vec<usize> = order.iter().map(|&i| msgs[i].plain_blocks()).collect();
        let mut lanes = vec![aes::Block::default(); msgs.len()];
        // The plain blocks: 16 bytes as they are, no padding, xorend or subkey.
        let mut active = lanes.len();
        for j in 0..plain.first().copied().unwrap_or(0) {
            while active > 0 && plain[active - 1] <= j {
                active -= 1;
            }
            let at = j * 16;
            for (lane, &i) in lanes[..active].iter_mut().zip(&order) {
                if let Some(Ok(b)) = msgs[i].bytes.get(at..at + 16).map(<[u8; 16]>::try_from) {
                    *lane = aes::Block::from(xor(&(*lane).into(), &b));
                }
            }
            encrypt(&mut lanes[..active]);
        }
        // The last few blocks of each message, side by side too.
        let mut tails: Vec<(usize, usize, usize)> =
            order.iter().zip(&plain).enumerate().map(|(k, (&i, &p))| (k, i, p)).collect();
        let mut batch: Vec<aes::Block> = Vec::with_capacity(lanes.len());
        let mut whose: Vec<usize> = Vec::with_capacity(lanes.len());
        while !tails.is_empty() {
            batch.clear();
            whose.clear();
            for (k, i, j) in &mut tails {
                let m = &msgs[*i];
                let mut b = m.block(*j);
                if *j + 1 == m.blocks() {
                    let complete = !m.bytes.is_empty() && m.bytes.len().is_multiple_of(16);
                    b = xor(&b, if complete { &self.k1 } else { &self.k2 });
                }
                batch.push(aes::Block::from(xor(&lanes[*k].into(), &b)));
                whose.push(*k);
                *j += 1;
            }
            encrypt(&mut batch);
            for (out, &k) in batch.iter().zip(&whose) {
                lanes[k] = *out;
            }
            tails.retain(|&(_, i, j)| j < msgs[i].blocks());
        }
        let mut tags = vec![[0u8; 16]; msgs.len()];
        for (k, &i) in order.iter().enumerate() {
            tags[i] = lanes[k].into();
        }
        tags
    }

    /// S2V(header, nonce, body) of every item (RFC 5297 §2.4): the synthetic IVs.
    fn s2v(&self, items: &[Item<'_>]) -> Vec<Block> {
        let headers: Vec<Msg<'_>> = items.iter().map(|it| Msg { bytes: it.header, xorend: None }).collect();
        let nonces: Vec<Msg<'_>> = items.iter().map(|it| Msg { bytes: it.nonce, xorend: None }).collect();
        let (h, n) = (self.cmac(&headers), self.cmac(&nonces));
        let d: Vec<Block> = (0..items.len()).map(|i| xor(&dbl(&xor(&dbl(&self.d0), &h[i])), &n[i])).collect();
        // A body shorter than a block: T = dbl(D) xor pad(body), one complete block.
        let short: Vec<Block> = items
            .iter()
            .zip(&d)
            .map(|(it, d)| {
                if it.body.len() >= 16 {
                    return [0; 16];
                }
                let padded = Msg { bytes: it.body, xorend: None }.block(0);
                xor(&dbl(d), &padded)
            })
            .collect();
        let last: Vec<Msg<'_>> = items
            .iter()
            .zip(d)
            .zip(&short)
            .map(|((it, d), t)| {
                if it.body.len() >= 16 {
                    Msg { bytes: &*it.body, xorend: Some(d) }
                } else {
                    Msg { bytes: t, xorend: None }
                }
            })
            .collect();
        self.cmac(&last)
    }

    /// XOR `data` with the CTR key stream from the synthetic IV `v` (its bits 63 and 31
    /// cleared, RFC 5297 §2.5), counting as a 128-bit big-endian number.
    fn ctr(&self, v: &Block, data: &mut [u8]) {
        self.ctr.encrypt_with_backend(WithBackend(|encrypt: &dyn Fn(&mut [aes::Block])| {
            ctr_with(v, data, encrypt)
        }));
    }
}

/// [`SivBatch::ctr`] with the key stream from `encrypt`.
fn ctr_with(v: &Block, data: &mut [u8], encrypt: &dyn Fn(&mut [aes::Block])) {
    let mut q = *v;
    q[8] &= 0x7f;
    q[12] &= 0x7f;
    let mut counter = u128::from_be_bytes(q);
    // A multiple of every backend's parallel width (VAES-512 takes 64 blocks at a time).
    let mut stream = [aes::Block::default(); 256];
    for chunk in data.chunks_mut(16 * stream.len()) {
        let blocks = chunk.len().div_ceil(16);
        for s in &mut stream[..blocks] {
            *s = aes::Block::from(counter.to_be_bytes());
            counter = counter.wrapping_add(1);
        }
        encrypt(&mut stream[..blocks]);
        // One flat loop over the bytes, which the compiler runs a vector register at a time.
        let keystream = aes::Block::slice_as_flattened(&stream[..blocks]);
        for (byte, k) in chunk.iter_mut().zip(keystream) {
            *byte ^= k;
        }
    }
}

impl<C: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16> + KeyInit> SivBatch<C> {
    /// Encrypts every item's body in place; their tags (the synthetic IVs).
    pub fn seal(&self, items: &mut [Item<'_>]) -> Vec<Block> {
        let tags = self.s2v(items);
        for (it, v) in items.iter_mut().zip(&tags) {
            self.ctr(v, it.body);
        }
        tags
    }

    /// Decrypts every item's body in place if its tag authenticates it; a body that does not
    /// authenticate is left encrypted. Whether each did.
    pub fn open(&self, items: &mut [Item<'_>], tags: &[Block]) -> Vec<bool> {
        for (it, v) in items.iter_mut().zip(tags) {
            self.ctr(v, it.body);
        }
        let computed = self.s2v(items);
        let mut ok = Vec::with_capacity(items.len());
        for ((it, v), c) in items.iter_mut().zip(tags).zip(&computed) {
            // Constant time: every byte is compared.
            let good = v.iter().zip(c).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if !good {
                self.ctr(v, it.body);
            }
            ok.push(good);
        }
        ok
    }
}

/// `blocks` encrypted in place by `backend`: whole runs of its parallel width, then the
/// rest. Going through the backend once per pass, instead of once per
/// `encrypt_blocks` call, matters: the VAES-512 backend broadcasts its round keys on
/// every call (and runs fewer than 64 blocks one by one through AES-NI anyway).
#[inline(always)]
fn encrypt_all<B: BlockCipherEncBackend<BlockSize = U16>>(backend: &B, blocks: &mut [aes::Block]) {
    let mut runs = blocks.chunks_exact_mut(B::ParBlocksSize::USIZE);
    for run in &mut runs {
        match <&mut ParBlocks<B>>::try_from(&mut *run) {
            Ok(whole) => backend.encrypt_par_blocks_inplace(whole),
            // Not reached (the runs are exactly that wide), but never a block left as it was.
            Err(_) => run.iter_mut().for_each(|b| backend.encrypt_block_inplace(b)),
        }
    }
    let rest = runs.into_remainder();
    if !rest.is_empty() {
        backend.encrypt_tail_blocks_inplace(rest);
    }
}

/// A closure that gets the cipher's backend as a plain function over blocks.
struct WithBackend<F>(F);

impl<F> BlockSizeUser for WithBackend<F> {
    type BlockSize = U16;
}

impl<F: FnOnce(&dyn Fn(&mut [aes::Block]))> BlockCipherEncClosure for WithBackend<F> {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        (self.0)(&|blocks: &mut [aes::Block]| encrypt_all(backend, blocks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_siv::siv::{Aes128Siv, Aes256Siv};
    use proptest::prelude::*;

    fn key(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
    }

    /// The reference: the `aes-siv` crate (whose own tests pin RFC 5297's vectors).
    fn crate_seal_256(key: &[u8], header: &[u8], nonce: &[u8], body: &[u8]) -> (Vec<u8>, Block) {
        let mut siv = Aes256Siv::new_from_slice(key).unwrap();
        let mut buf = body.to_vec();
        let tag = siv.encrypt_inout_detached([header, nonce], buf.as_mut_slice().into()).unwrap();
        (buf, tag.into())
    }

    fn crate_seal_128(key: &[u8], header: &[u8], nonce: &[u8], body: &[u8]) -> (Vec<u8>, Block) {
        let mut siv = Aes128Siv::new_from_slice(key).unwrap();
        let mut buf = body.to_vec();
        let tag = siv.encrypt_inout_detached([header, nonce], buf.as_mut_slice().into()).unwrap();
        (buf, tag.into())
    }

    fn batch_of<'a>(
        bufs: &'a mut [Vec<u8>],
        headers: &'a [[u8; 24]],
        nonces: &'a [[u8; 12]],
    ) -> Vec<Item<'a>> {
        bufs.iter_mut()
            .zip(headers.iter().zip(nonces))
            .map(|(b, (header, nonce))| Item { header, nonce, body: b.as_mut_slice() })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Goal: a batch seals exactly as the crate seals each packet alone, and opens back.
        #[test]
        fn batches_match_the_crate(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..12),
            seed in any::<u8>(),
            big in any::<bool>(),
        ) {
            let k = key(if big { 64 } else { 32 }, seed);
            let headers: Vec<[u8; 24]> = (0..bodies.len()).map(|i| [i as u8 ^ seed; 24]).collect();
            let nonces: Vec<[u8; 12]> = (0..bodies.len()).map(|i| [seed.wrapping_add(i as u8); 12]).collect();
            let mut bufs = bodies.clone();
            let mut items = batch_of(&mut bufs, &headers, &nonces);
            let tags = if big {
                SivBatch::<aes::Aes256>::new(&k).unwrap().seal(&mut items)
            } else {
                SivBatch::<aes::Aes128>::new(&k).unwrap().seal(&mut items)
            };
            drop(items);
            for i in 0..bodies.len() {
                let (want, tag) = if big {
                    crate_seal_256(&k, &headers[i], &nonces[i], &bodies[i])
                } else {
                    crate_seal_128(&k, &headers[i], &nonces[i], &bodies[i])
                };
                prop_assert_eq!(&bufs[i], &want, "body {}", i);
                prop_assert_eq!(tags[i], tag, "tag {}", i);
            }
            // Open, with one tag flipped: that one stays encrypted, the others come back.
            let mut bad_tags = tags.clone();
            bad_tags[0][0] ^= 1;
            let sealed = bufs.clone();
            let mut items = batch_of(&mut bufs, &headers, &nonces);
            let ok = if big {
                SivBatch::<aes::Aes256>::new(&k).unwrap().open(&mut items, &bad_tags)
            } else {
                SivBatch::<aes::Aes128>::new(&k).unwrap().open(&mut items, &bad_tags)
            };
            drop(items);
            prop_assert!(!ok[0]);
            prop_assert_eq!(&bufs[0], &sealed[0]);
            for i in 1..bodies.len() {
                prop_assert!(ok[i]);
                prop_assert_eq!(&bufs[i], &bodies[i]);
            }
        }
    }

    /// A frame-sized batch (64 KiB bodies of different lengths) against the crate.
    #[test]
    fn big_bodies_match_the_crate() {
        let k = key(64, 3);
        let batch = SivBatch::<aes::Aes256>::new(&k).unwrap();
        let bodies: Vec<Vec<u8>> = [65_000usize, 17, 16, 15, 0, 40_001, 1452 * 3]
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        let (h, n) = ([7u8; 24], [9u8; 12]);
        let mut bufs = bodies.clone();
        let mut items: Vec<Item<'_>> =
            bufs.iter_mut().map(|b| Item { header: &h, nonce: &n, body: b.as_mut_slice() }).collect();
        let tags = batch.seal(&mut items);
        drop(items);
        for (i, body) in bodies.iter().enumerate() {
            let (want, tag) = crate_seal_256(&k, &h, &n, body);
            assert!(bufs[i] == want, "body {i}");
            assert_eq!(tags[i], tag, "tag {i}");
        }
    }
}
