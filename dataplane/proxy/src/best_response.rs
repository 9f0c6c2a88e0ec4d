//! RFC 3261 §16.7: which response a stateful proxy sends upstream when a request went to
//! one or more branches. Pure bookkeeping over status codes; the core holds the responses.
//!
//! - 101–199: forwarded at once (100 Trying is hop-by-hop and never forwarded).
//! - 2xx: forwarded at once, and every other branch is cancelled; later 2xx (other
//!   branches answering an INVITE before their CANCEL lands, or a 2xx after a non-2xx
//!   final already went upstream) are forwarded too (§16.7 step 5).
//! - 6xx: held, and every other branch is cancelled; it wins over anything but a 2xx.
//! - 3xx–5xx: held until every branch has a final response; then the best is sent: a
//!   6xx if any, else one of the lowest class.
//! - A best response of 503 is sent as 500: a 503 would tell the client that this proxy,
//!   not just that destination, is unavailable (§16.7 step 6).
//!
//! Answers the proxy generates itself for a branch (408 on Timer B or C, 503 when it
//! cannot be sent) are recorded here as that branch's final response (§16.9); the core
//! sends them as they are if they win, so a lone unreachable next hop still gives 503.

/// Most branches one request forks to.
pub const MAX_BRANCHES: usize = 16;

/// What to do with a response that arrived on a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward this response upstream now.
    Forward,
    /// Forward this response upstream now, and cancel every other branch still ringing.
    ForwardAndCancelOthers,
    /// Keep it as a candidate and cancel every other branch (a 6xx).
    HoldAndCancelOthers,
    /// Keep it as a candidate; other branches are still pending.
    Hold,
    /// Drop it (a 100, or a final response after the request was settled).
    Drop,
    /// Every branch has answered: send branch `branch`'s response upstream, with
    /// `status` (its own, or 500 in place of a 503).
    SendBest {
        /// The branch whose response wins.
        branch: usize,
        /// The status to send.
        status: u16,
    },
}

/// The response context of one forked request: eight bytes, kept in every transaction.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext {
    branches: u8,
    /// Bit i: branch i has a final response.
    finished: u16,
    /// The best final response so far: its branch and status (status 0: none yet).
    best_branch: u8,
    best_status: u16,
    settled: bool,
}

impl ResponseContext {
    /// A context for a request sent to `branches` branches (1 to [`MAX_BRANCHES`]).
    pub fn new(branches: usize) -> Self {
        Self {
            branches: branches.clamp(1, MAX_BRANCHES) as u8,
            finished: 0,
            best_branch: 0,
            best_status: 0,
            settled: false,
        }
    }

    /// Whether a final response has gone (or been chosen to go) upstream.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// Branches without a final response yet.
    pub fn pending(&self) -> usize {
        usize::from(self.branches) - self.finished.count_ones() as usize
    }

    fn is_finished(&self, branch: usize) -> bool {
        self.finished & (1 << branch) != 0
    }

    fn finish(&mut self, branch: usize) {
        self.finished |= 1 << branch;
    }

    fn best(&self) -> Option<(usize, u16)> {
        (self.best_status != 0).then_some((usize::from(self.best_branch), self.best_status))
    }

    fn set_best(&mut self, branch: usize, status: u16) {
        self.best_branch = branch as u8;
        self.best_status = status;
    }

    /// A response with `status` arrived on `branch` (out-of-range branches are dropped).
    pub fn on_response(&mut self, branch: usize, status: u16) -> Decision {
        if branch >= usize::from(self.branches) {
            return Decision::Drop;
        }
        match status {
            100 => Decision::Drop,
            101..=199 if self.settled || self.is_finished(branch) => Decision::Drop,
            101..=199 => Decision::Forward,
            200..=299 => {
                self.finish(branch);
                if self.settled {
                    return Decision::Forward;
                }
                self.settled = true;
                self.set_best(branch, status);
                Decision::ForwardAndCancelOthers
            }
            _ => {
                if self.is_finished(branch) {
                    return Decision::Drop;
                }
                self.finish(branch);
                if self.settled {
                    return Decision::Drop;
                }
                if self.best().is_none_or(|(_, best)| better(status, best)) {
                    self.set_best(branch, status);
                }
                if self.pending() == 0 {
                    return self.send_best();
                }
                if status >= 600 {
                    Decision::HoldAndCancelOthers
                } else {
                    Decision::Hold
                }
            }
        }
    }

    fn send_best(&mut self) -> Decision {
        self.settled = true;
        let (branch, status) = self.best().expect("a final response was recorded");
        let status = if status == 503 { 500 } else { status };
        Decision::SendBest { branch, status }
    }
}

/// Whether `candidate` beats `best` among non-2xx finals: a 6xx beats everything, then
/// the lower class wins; within a class the first to arrive stays.
fn better(candidate: u16, best: u16) -> bool {
    let rank = |s: u16| if s >= 600 { 0 } else { s / 100 };
    rank(candidate) < rank(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_branch_forwards_provisionals_and_its_final_answer() {
        let mut rc = ResponseContext::new(1);
        assert_eq!(rc.on_response(0, 100), Decision::Drop);
        assert_eq!(rc.on_response(0, 180), Decision::Forward);
        assert_eq!(
            rc.on_response(0, 486),
            Decision::SendBest {
                branch: 0,
                status: 486
            }
        );
        assert!(rc.is_settled());
        assert_eq!(
            rc.on_response(0, 486),
            Decision::Drop,
            "a retransmission is not sent twice"
        );
        assert_eq!(
            rc.on_response(0, 200),
            Decision::Forward,
            "a 2xx after a final still goes (§16.7 step 5)"
        );
    }

    #[test]
    fn a_lone_503_goes_upstream_as_500() {
        let mut rc = ResponseContext::new(1);
        assert_eq!(
            rc.on_response(0, 503),
            Decision::SendBest {
                branch: 0,
                status: 500
            }
        );
    }

    #[test]
    fn a_2xx_wins_at_once_and_cancels_the_others() {
        let mut rc = ResponseContext::new(3);
        assert_eq!(rc.on_response(1, 486), Decision::Hold);
        assert_eq!(rc.on_response(2, 200), Decision::ForwardAndCancelOthers);
        assert_eq!(
            rc.on_response(0, 180),
            Decision::Drop,
            "settled: no more provisionals"
        );
        assert_eq!(
            rc.on_response(0, 200),
            Decision::Forward,
            "a second 2xx still goes (INVITE)"
        );
        assert_eq!(rc.on_response(0, 487), Decision::Drop);
    }

    #[test]
    fn without_a_2xx_the_lowest_class_wins_when_all_have_answered() {
        let mut rc = ResponseContext::new(3);
        assert_eq!(rc.on_response(0, 503), Decision::Hold);
        assert_eq!(rc.on_response(1, 404), Decision::Hold);
        assert_eq!(rc.pending(), 1);
        assert_eq!(
            rc.on_response(2, 302),
            Decision::SendBest {
                branch: 2,
                status: 302
            }
        );
    }

    #[test]
    fn a_6xx_cancels_the_others_and_beats_any_lower_class() {
        let mut rc = ResponseContext::new(3);
        assert_eq!(rc.on_response(0, 404), Decision::Hold);
        assert_eq!(rc.on_response(1, 603), Decision::HoldAndCancelOthers);
        assert_eq!(
            rc.on_response(2, 487),
            Decision::SendBest {
                branch: 1,
                status: 603
            }
        );
    }

    #[test]
    fn only_503s_become_a_500_and_the_first_of_a_class_stays() {
        let mut rc = ResponseContext::new(2);
        assert_eq!(rc.on_response(0, 503), Decision::Hold);
        assert_eq!(
            rc.on_response(1, 500),
            Decision::SendBest {
                branch: 0,
                status: 500
            }
        );
        let mut rc = ResponseContext::new(2);
        assert_eq!(rc.on_response(0, 486), Decision::Hold);
        assert_eq!(
            rc.on_response(1, 404),
            Decision::SendBest {
                branch: 0,
                status: 486
            }
        );
    }

    #[test]
    fn responses_on_unknown_branches_are_dropped() {
        let mut rc = ResponseContext::new(2);
        assert_eq!(rc.on_response(5, 200), Decision::Drop);
        assert_eq!(rc.pending(), 2);
    }
}
