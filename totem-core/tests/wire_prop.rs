//! Property tests of the wire codec (study §9.4, WIRE-1): every valid message round-trips,
//! and no input, however malformed, makes the decoder panic or accept a damaged datagram
//! as something it was not.

use bytes::Bytes;
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use totem_core::message::{
    CommitMember, CommitToken, Join, Mcast, McastBody, MergeDetect, PROCESSORS_MAX, RTR_ENTRIES_MAX,
    RtrEntry, Token, TokenHoldCancel,
};
use totem_core::wire::{decode, decode_bytes, encode, encoded_len};
use totem_core::{Guarantee, Message, NodeId, RingId, Seq};

/// Cases per property: enough to hit every message type and boundary many times (about a
/// second in all at the test profile's opt-level). `PROPTEST_CASES` overrides it for a soak.
const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

/// Small ids collide often (exercising sorting); large ones exercise every byte.
fn node() -> impl Strategy<Value = NodeId> {
    prop_oneof![1u32..16, 1u32..=u32::MAX].prop_map(NodeId)
}

fn ring_id() -> impl Strategy<Value = RingId> {
    (any::<u32>(), any::<u64>()).prop_map(|(rep, seq)| RingId::new(NodeId(rep), seq))
}

fn seq() -> impl Strategy<Value = Seq> {
    any::<u32>().prop_map(Seq)
}

fn guarantee() -> impl Strategy<Value = Guarantee> {
    prop_oneof![Just(Guarantee::Agreed), Just(Guarantee::Safe)]
}

/// Mostly small frames (cheap to truncate byte by byte), sometimes MTU-sized ones.
fn frame() -> impl Strategy<Value = Bytes> {
    prop_oneof![9 => vec(any::<u8>(), 0..200), 1 => vec(any::<u8>(), 1000..1500)].prop_map(Bytes::from)
}

fn original() -> impl Strategy<Value = Mcast> {
    (ring_id(), seq(), node(), guarantee(), frame()).prop_map(|(ring_id, seq, origin, guarantee, f)| Mcast {
        ring_id,
        seq,
        origin,
        guarantee,
        body: McastBody::Frame(f),
    })
}

fn mcast() -> impl Strategy<Value = Mcast> {
    let wrapper = (ring_id(), seq(), node(), guarantee(), original()).prop_map(
        |(ring_id, seq, origin, guarantee, inner)| Mcast {
            ring_id,
            seq,
            origin,
            guarantee,
            body: McastBody::Recovered(Box::new(inner)),
        },
    );
    prop_oneof![original(), wrapper]
}

fn token() -> impl Strategy<Value = Token> {
    let rtr =
        vec((ring_id(), seq()).prop_map(|(ring_id, seq)| RtrEntry { ring_id, seq }), 0..=RTR_ENTRIES_MAX);
    (ring_id(), any::<u32>(), seq(), seq(), proptest::option::of(node()), any::<(u32, u32, bool)>(), rtr)
        .prop_map(|(ring_id, token_seq, seq, aru, aru_addr, (fcc, backlog, retrans_flag), rtr)| Token {
            ring_id,
            token_seq,
            seq,
            aru,
            aru_addr,
            fcc,
            backlog,
            retrans_flag,
            rtr,
        })
}

/// Sorted and duplicate-free by construction; usually cluster-sized, sometimes at the limit.
fn node_set() -> impl Strategy<Value = Vec<NodeId>> {
    prop_oneof![20 => btree_set(node(), 0..=16), 1 => btree_set(node(), 0..=PROCESSORS_MAX)]
        .prop_map(|s| s.into_iter().collect())
}

fn join() -> impl Strategy<Value = Join> {
    (node(), node_set(), node_set(), any::<u64>(), any::<bool>()).prop_map(
        |(sender, proc_set, failed_set, ring_seq, leave)| Join {
            sender,
            proc_set,
            failed_set,
            ring_seq,
            leave,
        },
    )
}

fn commit_token() -> impl Strategy<Value = CommitToken> {
    let entry = || (ring_id(), seq(), seq(), any::<bool>());
    let members = prop_oneof![
        20 => btree_map(node(), entry(), 0..=16),
        1 => btree_map(node(), entry(), 0..=PROCESSORS_MAX),
    ]
    .prop_map(|m| {
        m.into_iter()
            .map(|(node, (old_ring_id, old_aru, high_delivered, received_flag))| CommitMember {
                node,
                old_ring_id,
                old_aru,
                high_delivered,
                received_flag,
            })
            .collect::<Vec<_>>()
    });
    (any::<u32>(), ring_id(), members)
        .prop_flat_map(|(token_seq, ring_id, members)| {
            let len = members.len() as u32;
            (Just(token_seq), Just(ring_id), 0..=len, Just(members))
        })
        .prop_map(|(token_seq, ring_id, memb_index, members)| CommitToken {
            token_seq,
            ring_id,
            memb_index,
            members,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        token().prop_map(Message::Token),
        mcast().prop_map(Message::Mcast),
        (node(), ring_id())
            .prop_map(|(sender, ring_id)| Message::MergeDetect(MergeDetect { sender, ring_id })),
        join().prop_map(Message::Join),
        commit_token().prop_map(Message::CommitToken),
        ring_id().prop_map(|ring_id| Message::TokenHoldCancel(TokenHoldCancel { ring_id })),
    ]
}

fn encoded(sender: NodeId, msg: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    encode(sender, msg, &mut buf);
    buf
}

/// Whatever decodes must be exactly what re-encodes to the same bytes: the encoding is
/// canonical, so a damaged datagram can never decode to a message that "means" the original.
fn check_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((sender, msg)) = decode(bytes) {
        prop_assert_eq!(encoded(sender, &msg), bytes);
        prop_assert_eq!(decode_bytes(&Bytes::copy_from_slice(bytes)), Ok((sender, msg)));
    } else {
        prop_assert!(decode_bytes(&Bytes::copy_from_slice(bytes)).is_err());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    // Goal: encode then decode is the identity on every valid message and sender, and
    // encoded_len predicts the size exactly.
    #[test]
    fn round_trip(sender in node(), msg in message(), prefix in vec(any::<u8>(), 0..8)) {
        // Appending after existing content must not disturb it.
        let mut buf = prefix.clone();
        encode(sender, &msg, &mut buf);
        prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
        let bytes = &buf[prefix.len()..];
        prop_assert_eq!(bytes.len(), encoded_len(&msg));
        prop_assert_eq!(decode(bytes), Ok((sender, msg.clone())));
        prop_assert_eq!(decode_bytes(&Bytes::copy_from_slice(bytes)), Ok((sender, msg)));
    }

    // Goal: arbitrary bytes never panic the decoder, and anything accepted is canonical.
    #[test]
    fn arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        check_canonical(&bytes)?;
    }

    // Goal: the same with a valid header, so random bodies reach every type's parser.
    #[test]
    fn arbitrary_bodies(kind in 0u8..6, sender in any::<u32>(), body in vec(any::<u8>(), 0..600)) {
        let mut bytes = vec![0x74, 0x70, 1, kind];
        bytes.extend_from_slice(&sender.to_le_bytes());
        bytes.extend_from_slice(&body);
        check_canonical(&bytes)?;
    }

    // Goal: every strict prefix of a valid datagram is rejected: a truncated packet is never
    // mistaken for a shorter valid one.
    #[test]
    fn truncations(sender in node(), msg in message()) {
        let buf = encoded(sender, &msg);
        for cut in 0..buf.len() {
            prop_assert!(decode(&buf[..cut]).is_err(), "accepted a cut at {}", cut);
        }
        prop_assert!(decode(&buf).is_ok());
    }

    // Goal: changing any one byte of a valid datagram never panics the decoder, and what
    // still decodes is exactly the damaged bytes' own message.
    #[test]
    fn single_byte_corruptions(sender in node(), msg in message(), mask in 1u8..=255) {
        let mut buf = encoded(sender, &msg);
        for i in 0..buf.len() {
            buf[i] ^= mask;
            check_canonical(&buf)?;
            buf[i] ^= mask;
        }
    }
}
