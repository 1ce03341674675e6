//! Protocol parameters: Corosync's defaults and derivation rules (study §3), validated.

use core::time::Duration;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bytes of one datagram the codec and crypto layers reserve around a frame: the MCAST
/// header twice (a recovery wrapper carries a whole old-ring MCAST) plus room for
/// authentication. Frames are sized so that every datagram stays within `netmtu`.
pub const DATAGRAM_OVERHEAD: usize = 2 * 64 + 64;

/// The largest message a node orders: 1 MiB (Corosync's MESSAGE_SIZE_MAX) plus room for a
/// service header, so that CPG payloads of a full 1 MiB fit in one message.
pub const MESSAGE_SIZE_MAX: usize = 1024 * 1024 + 1024;

/// Slots in a sort queue: how far a ring's sequence numbers may run ahead of the oldest
/// buffered message (Corosync's QUEUE_RTR_ITEMS_SIZE_MAX).
pub const SORT_QUEUE_SLOTS: u32 = 16384;

/// The shortest timeout Corosync accepts (3 kernel ticks at HZ=100).
pub const MINIMUM_TIMEOUT: Duration = Duration::from_millis(30);

/// Timing and flow-control parameters of one node. Build with [`Config::for_cluster`] (which
/// applies Corosync's derivations) and adjust fields, then [`Config::validate`].
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Token-loss timeout, already scaled by the token coefficient ("effective token").
    pub token: Duration,
    /// Resend the last token this node sent if no newer token arrives in this time.
    pub token_retransmit: Duration,
    /// How long the representative sits on an idle token.
    pub hold: Duration,
    /// JOIN resend period in gather.
    pub join: Duration,
    /// Wait for every JOIN to agree before declaring the silent ones failed.
    pub consensus: Duration,
    /// An idle representative advertises its ring this long after an idle token visit.
    pub merge: Duration,
    /// Random delay up to this before each JOIN (0 = none).
    pub send_join: Duration,
    /// Token visits with a stuck aru before the node holding it back removes itself.
    pub fail_recv_const: u32,
    /// Idle token visits before the token is held.
    pub seqno_unchanged_const: u32,
    /// Most messages (new and retransmitted) per rotation, ring-wide.
    pub window_size: u32,
    /// Most messages one node sends per token visit.
    pub max_messages: u32,
    /// Token visits a hole must be seen before its retransmission is requested.
    pub miss_count_const: u32,
    /// Forward a held token if it carries retransmit requests.
    pub cancel_token_hold_on_retransmit: bool,
    /// Largest datagram, in bytes; frames are sized to fit.
    pub netmtu: usize,
    /// Locally originated messages that may wait for a token before `submit` says "try again".
    pub pending_queue_max: usize,
    /// Seed of the node's random choices (the send_join jitter). Give each node its own;
    /// the same seed and inputs always give the same outputs.
    pub rng_seed: u64,
    /// Emit [`crate::Probe`] outputs (internal events for the spec's checkers).
    pub probes: bool,
    /// A deliberately broken variant of the protocol (tests of the checkers only).
    #[cfg(feature = "broken")]
    pub bug: Option<crate::broken::Bug>,
}

/// Inputs of Corosync's derivation rules (study §3.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimingBase {
    pub token: Duration,
    pub token_coefficient: Duration,
    pub token_retransmits_before_loss_const: u32,
    pub nodes: usize,
}

impl Default for TimingBase {
    fn default() -> Self {
        TimingBase {
            token: Duration::from_millis(3000),
            token_coefficient: Duration::from_millis(650),
            token_retransmits_before_loss_const: 4,
            nodes: 2,
        }
    }
}

impl TimingBase {
    /// token + (N - 2) * coefficient for N > 2 nodes.
    pub fn effective_token(&self) -> Duration {
        let extra = self.nodes.saturating_sub(2) as u32;
        self.token + self.token_coefficient * extra
    }
}

impl Config {
    /// Corosync's defaults for a cluster of `nodes` nodes with the given base token.
    pub fn for_cluster(base: TimingBase) -> Config {
        let token = base.effective_token();
        let token_ms = token.as_millis() as u64;
        // floor(token / (k + 0.2)), computed in tenths to stay exact.
        let retransmit_ms = token_ms * 10 / (u64::from(base.token_retransmits_before_loss_const) * 10 + 2);
        // floor(retransmit * 0.8 - 10)
        let hold_ms = (retransmit_ms * 8 / 10).saturating_sub(10);
        let consensus_ms = token_ms * 12 / 10;
        Config {
            token,
            token_retransmit: Duration::from_millis(retransmit_ms),
            hold: Duration::from_millis(hold_ms),
            join: Duration::from_millis(50),
            consensus: Duration::from_millis(consensus_ms),
            merge: Duration::from_millis(200),
            send_join: Duration::ZERO,
            fail_recv_const: 2500,
            seqno_unchanged_const: 30,
            window_size: 50,
            max_messages: 17,
            miss_count_const: 5,
            cancel_token_hold_on_retransmit: false,
            netmtu: 1500,
            pending_queue_max: 4 * MESSAGE_SIZE_MAX / 1500,
            rng_seed: 0,
            probes: false,
            #[cfg(feature = "broken")]
            bug: None,
        }
    }

    /// Set `netmtu` and size the send queue for it: 4 MiB of frames, as Corosync's
    /// MESSAGE_QUEUE_MAX (4 MiB / netmtu slots), which always holds a message of the largest
    /// size. The default `pending_queue_max` is this rule at 1500.
    pub fn set_netmtu(&mut self, netmtu: usize) {
        self.netmtu = netmtu;
        self.pending_queue_max = (4 * MESSAGE_SIZE_MAX / netmtu.max(1)).max(1);
    }

    /// The largest frame (packed application data) one MCAST may carry.
    pub fn frame_size_max(&self) -> usize {
        self.netmtu.saturating_sub(DATAGRAM_OVERHEAD)
    }

    /// Check every rule of study §3.2; the error names the value and the rule it breaks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let timeouts = [
            ("token", self.token),
            ("token_retransmit", self.token_retransmit),
            ("join", self.join),
            ("consensus", self.consensus),
            ("merge", self.merge),
        ];
        for (key, value) in timeouts {
            if value < MINIMUM_TIMEOUT {
                return Err(ConfigError::new(key, value, "must be at least 30 ms"));
            }
        }
        if self.hold < Duration::from_millis(14) {
            return Err(ConfigError::new("hold", self.hold, "must be at least 14 ms"));
        }
        if self.consensus < self.join {
            return Err(ConfigError::new("consensus", self.consensus, "must be at least join"));
        }
        if self.token_retransmit >= self.token {
            return Err(ConfigError::new(
                "token_retransmit",
                self.token_retransmit,
                "must be shorter than token, or the token is never retransmitted before loss",
            ));
        }
        let counts = [
            ("window_size", self.window_size),
            ("max_messages", self.max_messages),
            ("miss_count_const", self.miss_count_const),
            ("fail_recv_const", self.fail_recv_const),
            ("seqno_unchanged_const", self.seqno_unchanged_const),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(ConfigError::new(key, value, "must be at least 1"));
            }
        }
        if self.max_messages > self.window_size {
            return Err(ConfigError::new("max_messages", self.max_messages, "must not exceed window_size"));
        }
        if self.window_size > SORT_QUEUE_SLOTS / 4 {
            return Err(ConfigError::new(
                "window_size",
                self.window_size,
                "must leave the sort queue room for a rotation of lag (at most 4096)",
            ));
        }
        if self.frame_size_max() < 256 {
            return Err(ConfigError::new(
                "netmtu",
                self.netmtu,
                "must leave at least 256 bytes of frame after headers (netmtu >= 448)",
            ));
        }
        if self.netmtu > 65536 {
            return Err(ConfigError::new("netmtu", self.netmtu, "must be at most 65536"));
        }
        if self.pending_queue_max == 0 {
            return Err(ConfigError::new("pending_queue_max", self.pending_queue_max, "must be at least 1"));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::for_cluster(TimingBase::default())
    }
}

/// A configuration value that breaks a rule.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
#[error("{key} = {value}: {rule}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub rule: &'static str,
}

impl ConfigError {
    fn new(key: &'static str, value: impl core::fmt::Debug, rule: &'static str) -> Self {
        ConfigError { key, value: format!("{value:?}"), rule }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the derived timeouts match the worked examples of study §3.1.
    #[test]
    fn derivations_match_corosync() {
        let cases = [
            (2, 3000, 714, 561, 3600),
            (3, 3650, 869, 685, 4380),
            (5, 4950, 1178, 932, 5940),
            (16, 12100, 2880, 2294, 14520),
        ];
        for (nodes, token, retransmit, hold, consensus) in cases {
            let c = Config::for_cluster(TimingBase { nodes, ..TimingBase::default() });
            assert_eq!(c.token.as_millis(), token, "{nodes} nodes");
            assert_eq!(c.token_retransmit.as_millis(), retransmit, "{nodes} nodes");
            assert_eq!(c.hold.as_millis(), hold, "{nodes} nodes");
            assert_eq!(c.consensus.as_millis(), consensus, "{nodes} nodes");
            c.validate().expect("defaults are valid");
        }
    }

    // Goal: a bad value is rejected with its key and the rule it breaks.
    #[test]
    fn the_send_queue_follows_netmtu() {
        let mut c = Config::default();
        let default = c.pending_queue_max;
        c.set_netmtu(1500);
        assert_eq!(c.pending_queue_max, default, "the default is the rule at 1500");
        c.set_netmtu(65536);
        assert_eq!(c.pending_queue_max, 64, "Corosync: 4 MiB / 65536");
        assert!(c.pending_queue_max * c.frame_size_max() >= MESSAGE_SIZE_MAX, "a largest message fits");
        c.validate().expect("valid");
    }

    #[test]
    fn validation_names_key_and_rule() {
        let c = Config { join: Duration::from_millis(10), ..Config::default() };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "join");
        assert!(e.to_string().contains("at least 30 ms"), "{e}");
        let c = Config { max_messages: 100, ..Config::default() };
        assert_eq!(c.validate().unwrap_err().key, "max_messages");
    }
}
