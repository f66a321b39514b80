//! A connection's held requests: a long poll or a step parked until the
//! service has its answer (woken by its topic, or at its deadline), a
//! stream filled within its budget (with heartbeats while it has nothing
//! to say), and what a live restart does to each.

use super::*;

/// Why a parked request's service is asked about it again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ask {
    /// Its topic changed.
    Wake,
    /// Its deadline passed, or the daemon stops: answer now.
    Expired,
    /// The daemon restarts (`Service::interrupt`).
    Restart,
}

impl<T: Socket> Conn<T> {
    /// The topic a held request waits on.
    /// The hold of a request parked unanswered, if any.
    /// A held request's hold, parked or streaming: what the service is
    /// told to release when the connection goes.
    pub fn parked_hold(&self) -> Option<Hold> {
        match &self.state {
            State::Parked { hold, .. } | State::Streaming { hold, .. } => Some(*hold),
            _ => None,
        }
    }

    pub fn held_topic(&self) -> Option<usize> {
        match &self.state {
            State::Parked { hold, .. } | State::Streaming { hold, .. } => Some(hold.topic),
            _ => None,
        }
    }

    /// The topic of a held request changed: a long poll may answer, a
    /// stream may have more to send.
    pub fn wake<S: Service>(&mut self, cx: &mut Cx<'_, S>) -> Step {
        match self.state {
            State::Parked { .. } => self.answer_hold(cx, Ask::Wake),
            State::Streaming { .. } => self.fill(cx),
            _ => {}
        }
        self.on_ready(cx)
    }

    /// The connection's deadline passed (or a timer fired early).
    pub fn on_deadline<S: Service>(&mut self, cx: &mut Cx<'_, S>) -> Step {
        let now = cx.now;
        let due = self.deadline(cx.limits) <= now;
        match &mut self.state {
            State::Parked { hold, .. } if hold.until.is_some_and(|t| t <= now) => {
                self.answer_hold(cx, Ask::Expired);
                self.on_ready(cx)
            }
            State::Streaming {
                heartbeat_at,
                hold,
                refill_at,
            } => {
                if self.last_active + cx.limits.idle_timeout <= now {
                    return Step::Close;
                }
                if refill_at.is_some_and(|t| t <= now) {
                    *refill_at = None;
                    self.fill(cx);
                    return self.on_ready(cx);
                }
                if *heartbeat_at <= now && hold.kind == HoldKind::Stream {
                    *heartbeat_at = now + HEARTBEAT;
                    if self.output.len() == self.written {
                        self.output_buf(cx.pools)
                            .extend_from_slice(encode::SSE_HEARTBEAT);
                    }
                }
                self.on_ready(cx)
            }
            _ if due => Step::Close,
            _ => Step::Wait,
        }
    }

    /// Asks the service about a parked long poll; writes the answer if it
    /// has one, then takes up pipelined requests again.
    pub(super) fn answer_hold<S: Service>(&mut self, cx: &mut Cx<'_, S>, ask: Ask) {
        let State::Parked {
            hold,
            persist,
            head_only,
        } = self.state
        else {
            return;
        };
        cx.body.clear();
        let reply = match ask {
            Ask::Restart => cx.service.interrupt(&hold, cx.body),
            _ => cx.service.resume(&hold, ask == Ask::Expired, cx.body),
        };
        if let Some(again) = reply.hold {
            self.state = State::Parked {
                hold: again,
                persist,
                head_only,
            };
            return;
        }
        self.state = State::Head { scanned: 0 };
        // A long poll is a GET: safe to answer "retry" instead.
        self.write_reply(cx, reply, persist, head_only, true);
        self.process(cx);
    }

    /// Appends stream frames while the output is under budget.
    pub(super) fn fill<S: Service>(&mut self, cx: &mut Cx<'_, S>) {
        let State::Streaming { mut hold, .. } = self.state else {
            return;
        };
        if self.queued() >= STREAM_BUDGET_BYTES / 2 {
            return;
        }
        let budget = STREAM_BUDGET_BYTES - self.queued();
        let out = self.output_buf(cx.pools);
        let before = out.len();
        let fill = cx.service.stream(&mut hold, out, budget);
        let wrote = out.len() > before;
        match fill {
            Fill::End => self.state = State::Closing,
            _ => {
                if let State::Streaming {
                    hold: h,
                    heartbeat_at,
                    refill_at,
                } = &mut self.state
                {
                    *h = hold;
                    if wrote {
                        *heartbeat_at = cx.now + HEARTBEAT;
                    }
                    if let Fill::Later(t) = fill {
                        *refill_at = Some(refill_at.map_or(t, |r| r.min(t)));
                    }
                }
            }
        }
    }

    /// The daemon is about to replace its program (a live restart): a
    /// stream ends after the frames already queued (its client resumes
    /// from its last event id), a held request answers now if the service
    /// says so (`Service::interrupt`), a request in progress is finished.
    /// Once it is idle (`is_idle`), the reactor hands it over.
    pub fn begin_restart<S: Service>(&mut self, cx: &mut Cx<'_, S>) -> Step {
        match self.state {
            State::Streaming { hold, .. } => {
                cx.service.release(&hold);
                self.state = State::Closing;
                // Its client sent nothing more: a plain close after the
                // queued frames, no linger.
                self.client_closes = true;
            }
            State::Parked { .. } => self.answer_hold(cx, Ask::Restart),
            _ => {}
        }
        self.on_ready(cx)
    }
}
