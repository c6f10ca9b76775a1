//! The RC queue-pair state machine (RESET -> INIT -> RTR -> RTS, ERROR on any failure),
//! kept apart from the verbs calls so its rules are tested without hardware.

use crate::errors::TransferError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QpState {
    Reset,
    Init,
    Rtr,
    Rts,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QpEvent {
    /// Local setup done (port, access flags).
    Init,
    /// The peer's endpoint arrived through the handshake.
    PeerKnown,
    /// Send side ready.
    Ready,
    /// A failed completion or verbs error.
    Fail,
    /// Start over (reconnect after an error).
    Reset,
}

/// The state after `ev`, or an error naming the illegal transition.
pub fn next(state: QpState, ev: QpEvent) -> Result<QpState, TransferError> {
    use QpEvent as E;
    use QpState as S;
    Ok(match (state, ev) {
        (_, E::Fail) => S::Error,
        (_, E::Reset) => S::Reset,
        (S::Reset, E::Init) => S::Init,
        (S::Init, E::PeerKnown) => S::Rtr,
        (S::Rtr, E::Ready) => S::Rts,
        (s, e) => {
            return Err(TransferError::Rdma(format!(
                "illegal queue-pair transition {e:?} in state {s:?}"
            )))
        }
    })
}

/// Only an RTS queue pair may carry work requests.
pub fn can_post(state: QpState) -> bool {
    state == QpState::Rts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_rc_ladder_and_refuses_shortcuts() {
        let mut s = QpState::Reset;
        for ev in [QpEvent::Init, QpEvent::PeerKnown, QpEvent::Ready] {
            assert!(!can_post(s));
            s = next(s, ev).unwrap();
        }
        assert!(can_post(s));
        assert!(next(QpState::Reset, QpEvent::Ready).is_err());
        assert!(next(QpState::Init, QpEvent::Ready)
            .unwrap_err()
            .to_string()
            .contains("illegal"));
        assert_eq!(next(QpState::Rts, QpEvent::Fail).unwrap(), QpState::Error);
        assert_eq!(
            next(QpState::Error, QpEvent::Reset).unwrap(),
            QpState::Reset
        );
    }
}
