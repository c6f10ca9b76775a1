//! The domain types of `mooncake_common::types` to and from their wire messages. The
//! wire accepts what the domain cannot hold (an unknown soft-pin action, a TTL with
//! an action that takes none), so reading a `ReplicateConfig` can fail.

use crate::v1;
use mooncake_common::{ErrorCode, ReplicateConfig, SegmentDesc, SoftPin};

impl From<SegmentDesc> for v1::SegmentDesc {
    fn from(d: SegmentDesc) -> Self {
        v1::SegmentDesc {
            name: d.name,
            owner: d.owner,
            base: d.base,
            size: d.size,
            protocol: d.protocol,
            transport_endpoint: d.transport_endpoint,
            shm_path: d.shm_path,
            host_id: d.host_id,
            generation: d.generation,
        }
    }
}

impl From<&SegmentDesc> for v1::SegmentDesc {
    fn from(d: &SegmentDesc) -> Self {
        d.clone().into()
    }
}

impl From<v1::SegmentDesc> for SegmentDesc {
    fn from(d: v1::SegmentDesc) -> Self {
        SegmentDesc {
            name: d.name,
            owner: d.owner,
            base: d.base,
            size: d.size,
            protocol: d.protocol,
            transport_endpoint: d.transport_endpoint,
            shm_path: d.shm_path,
            host_id: d.host_id,
            generation: d.generation,
        }
    }
}

impl From<&ReplicateConfig> for v1::ReplicateConfig {
    fn from(rc: &ReplicateConfig) -> Self {
        use v1::SoftPinAction;
        let (action, ttl) = match rc.soft_pin {
            SoftPin::Preserve => (SoftPinAction::SoftPinPreserve, None),
            SoftPin::Enable { ttl_ms } => (SoftPinAction::SoftPinEnable, ttl_ms),
            SoftPin::Disable => (SoftPinAction::SoftPinDisable, None),
        };
        v1::ReplicateConfig {
            replica_num: rc.replica_num.clamp(1, u32::MAX as usize) as u32,
            with_hard_pin: rc.with_hard_pin,
            preferred_segments: rc.preferred_segments.clone(),
            soft_pin_action: action as i32,
            soft_pin_ttl_ms: ttl,
            avoid_segments: rc.avoid_segments.clone(),
        }
    }
}

/// A wire `ReplicateConfig` as the domain holds it: `INVALID_PARAMS` for an unknown
/// soft-pin action or a TTL with an action that takes none.
impl TryFrom<&v1::ReplicateConfig> for ReplicateConfig {
    type Error = ErrorCode;

    fn try_from(rc: &v1::ReplicateConfig) -> Result<Self, ErrorCode> {
        use v1::SoftPinAction;
        let action =
            SoftPinAction::try_from(rc.soft_pin_action).map_err(|_| ErrorCode::InvalidParams)?;
        let soft_pin = match (action, rc.soft_pin_ttl_ms) {
            (SoftPinAction::SoftPinEnable, ttl_ms) => SoftPin::Enable { ttl_ms },
            (_, Some(_)) => return Err(ErrorCode::InvalidParams),
            (SoftPinAction::SoftPinPreserve, None) => SoftPin::Preserve,
            (SoftPinAction::SoftPinDisable, None) => SoftPin::Disable,
        };
        Ok(ReplicateConfig {
            replica_num: (rc.replica_num as usize).max(1),
            with_hard_pin: rc.with_hard_pin,
            preferred_segments: rc.preferred_segments.clone(),
            soft_pin,
            avoid_segments: rc.avoid_segments.clone(),
        })
    }
}

/// An optional wire config: absent is the default one.
pub fn replicate_config(rc: Option<&v1::ReplicateConfig>) -> Result<ReplicateConfig, ErrorCode> {
    rc.map_or_else(|| Ok(ReplicateConfig::default()), ReplicateConfig::try_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_config_round_trips_and_zero_replicas_is_one() {
        for soft_pin in [
            SoftPin::Preserve,
            SoftPin::Disable,
            SoftPin::Enable { ttl_ms: None },
            SoftPin::Enable { ttl_ms: Some(5) },
        ] {
            let rc = ReplicateConfig {
                replica_num: 3,
                with_hard_pin: true,
                preferred_segments: vec!["a".into(), "b".into()],
                soft_pin,
                avoid_segments: vec!["c".into()],
            };
            let wire = v1::ReplicateConfig::from(&rc);
            assert_eq!(ReplicateConfig::try_from(&wire).unwrap(), rc);
        }
        let zero = v1::ReplicateConfig::from(&ReplicateConfig::replicas(0));
        assert_eq!(zero.replica_num, 1);
        let wire_zero = v1::ReplicateConfig::default();
        assert_eq!(
            ReplicateConfig::try_from(&wire_zero).unwrap().replica_num,
            1
        );
    }

    #[test]
    fn what_the_domain_cannot_hold_is_invalid_params() {
        let bad_action = v1::ReplicateConfig {
            soft_pin_action: 99,
            ..Default::default()
        };
        assert_eq!(
            ReplicateConfig::try_from(&bad_action),
            Err(ErrorCode::InvalidParams)
        );
        for action in [
            v1::SoftPinAction::SoftPinPreserve,
            v1::SoftPinAction::SoftPinDisable,
        ] {
            let ttl_without_enable = v1::ReplicateConfig {
                soft_pin_action: action as i32,
                soft_pin_ttl_ms: Some(10),
                ..Default::default()
            };
            assert_eq!(
                ReplicateConfig::try_from(&ttl_without_enable),
                Err(ErrorCode::InvalidParams)
            );
        }
        assert_eq!(replicate_config(None).unwrap(), ReplicateConfig::default());
    }

    #[test]
    fn segment_desc_round_trips() {
        let d = SegmentDesc {
            name: "n".into(),
            owner: "o".into(),
            base: 1,
            size: 2,
            protocol: "tcp".into(),
            transport_endpoint: "1.2.3.4:5".into(),
            shm_path: "/dev/shm/x".into(),
            host_id: "h".into(),
            generation: "g".into(),
        };
        assert_eq!(SegmentDesc::from(v1::SegmentDesc::from(&d)), d);
    }
}
