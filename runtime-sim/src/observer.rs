//! The hook through which a study watches a run and steers its agents, without the engine knowing
//! what the study is.
//!
//! An [`Observer`] is told of every event a node emits and of the wake-ups it asked for. It reads the
//! run through [`Sim`]'s read-only accessors and asks for actions through [`Hooks`]; the engine
//! carries those out, in the order asked, as soon as the callback returns (before it handles the
//! event itself), so an observer never holds the engine mutably and never sees a half-handled input.

use std::any::Any;

use proto_core::{Event, HttpResponse, OutboundId, Transmit};

use crate::scenario::Action;
use crate::sim::{Act, Ev, Sim};

/// What a study implements to watch a run. Every callback has a default that does nothing.
pub trait Observer {
    /// The run is built: formation and the script are scheduled, nothing has run yet.
    fn start(&mut self, sim: &Sim, hooks: &mut Hooks) {
        let _ = (sim, hooks);
    }

    /// Node `node` emitted `event` (before the engine acts on it).
    fn on_event(&mut self, sim: &Sim, node: u32, event: &Event, hooks: &mut Hooks) {
        let _ = (sim, node, event, hooks);
    }

    /// Node `from` makes the outbound call `t`. Return `true` to take it over: the engine then does
    /// nothing more with it, and the observer answers it with [`Hooks::respond`] (a server the study
    /// simulates itself, such as an anchor, or a node the study makes unreachable).
    fn on_transmit(&mut self, sim: &Sim, from: u32, t: &Transmit, hooks: &mut Hooks) -> bool {
        let _ = (sim, from, t, hooks);
        false
    }

    /// A wake-up asked for with [`Hooks::wake`] is due.
    fn on_wake(&mut self, sim: &Sim, token: u64, hooks: &mut Hooks) {
        let _ = (sim, token, hooks);
    }

    /// The observer itself, so that its owner can read its findings back ([`Sim::observer`]).
    fn as_any(&self) -> &dyn Any;
}

/// An action an observer asked for.
enum Effect {
    /// Call [`Observer::on_wake`] with `token` at `at_us`.
    Wake { at_us: u64, token: u64 },
    /// Agent `from` asks `to` to connect at `at_us`.
    Connect { at_us: u64, from: u32, to: u32 },
    /// Agent `from` scores `about` now.
    Impression { from: u32, about: u32, score: f64 },
    /// A scripted action at `at_us` (it joins the run's script).
    Script { at_us: u64, action: Action },
    /// The answer to call `oid` of `node` (its current incarnation) at `at_us`.
    Respond { at_us: u64, node: u32, oid: OutboundId, path: String, result: Result<HttpResponse, String> },
}

/// The actions an observer asks of the engine during one callback, carried out in order after it.
pub struct Hooks {
    now_us: u64,
    effects: Vec<Effect>,
}

impl Hooks {
    fn new(now_us: u64) -> Self {
        Self { now_us, effects: Vec::new() }
    }

    /// Calls [`Observer::on_wake`] with `token` at `at_us` (now, if that has passed).
    pub fn wake(&mut self, at_us: u64, token: u64) {
        self.effects.push(Effect::Wake { at_us: at_us.max(self.now_us), token });
    }

    /// Agent `from` asks `to` to connect at `at_us` (now, if that has passed); nothing if `from` has
    /// crashed by then.
    pub fn connect(&mut self, at_us: u64, from: u32, to: u32) {
        self.effects.push(Effect::Connect { at_us: at_us.max(self.now_us), from, to });
    }

    /// Agent `from` scores `about` now (`Command::SetImpression`).
    pub fn impression(&mut self, from: u32, about: u32, score: f64) {
        self.effects.push(Effect::Impression { from, about, score });
    }

    /// Answers call `oid` of `node` (taken over in [`Observer::on_transmit`]) with `result` at `at_us`
    /// (now, if that has passed); lost if the node restarts before.
    pub fn respond(
        &mut self,
        at_us: u64,
        node: u32,
        oid: OutboundId,
        path: String,
        result: Result<HttpResponse, String>,
    ) {
        self.effects.push(Effect::Respond { at_us: at_us.max(self.now_us), node, oid, path, result });
    }

    /// Adds `action` to the run's script at `at_us` (now, if that has passed).
    pub fn schedule(&mut self, at_us: u64, action: Action) {
        self.effects.push(Effect::Script { at_us: at_us.max(self.now_us), action });
    }
}

impl Sim {
    /// Calls the observer (if any) and then carries out what it asked for, in order.
    pub(crate) fn notify(&mut self, call: impl FnOnce(&mut dyn Observer, &Sim, &mut Hooks)) {
        // Out of the engine while it runs, so that it can read the whole engine.
        let Some(mut observer) = self.observer.take() else { return };
        let mut hooks = Hooks::new(self.now);
        call(observer.as_mut(), self, &mut hooks);
        self.observer = Some(observer);
        for effect in hooks.effects {
            self.carry_out(effect);
        }
    }

    /// Offers node `from`'s call `t` to the observer; `true` when it took it over.
    pub(crate) fn offer_transmit(&mut self, from: u32, t: &Transmit) -> bool {
        let Some(mut observer) = self.observer.take() else { return false };
        let mut hooks = Hooks::new(self.now);
        let taken = observer.on_transmit(self, from, t, &mut hooks);
        self.observer = Some(observer);
        for effect in hooks.effects {
            self.carry_out(effect);
        }
        taken
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Wake { at_us, token } => self.queue.push(at_us, Ev::Wake(token)),
            Effect::Connect { at_us, from, to } => {
                let inc = self.nodes[from as usize].inc;
                self.queue.push(at_us, Ev::Agent { node: from, inc, act: Act::Connect(to) });
            }
            Effect::Impression { from, about, score } => self.impress(from, about, score),
            Effect::Script { at_us, action } => {
                self.opts.script.push((at_us, action));
                self.queue.push(at_us, Ev::Script(self.opts.script.len() - 1));
            }
            Effect::Respond { at_us, node, oid, path, result } => {
                let inc = self.nodes[node as usize].inc;
                let peer = crate::trace::EXTERNAL;
                self.queue.push(at_us, Ev::Response { to: node, inc, oid, peer, path, result });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    /// Wakes at 3 s, then has node 0 score node 1 and node 1 connect to node 2; counts connections.
    #[derive(Default)]
    struct Probe {
        woke_at_us: Vec<(u64, u64)>,
        connected: u32,
    }

    impl Observer for Probe {
        fn start(&mut self, _sim: &Sim, hooks: &mut Hooks) {
            hooks.wake(3 * S, 7);
        }

        fn on_event(&mut self, _sim: &Sim, _node: u32, event: &Event, _hooks: &mut Hooks) {
            self.connected += matches!(event, Event::Connected { .. }) as u32;
        }

        fn on_wake(&mut self, sim: &Sim, token: u64, hooks: &mut Hooks) {
            self.woke_at_us.push((sim.now_us(), token));
            hooks.impression(0, 1, 0.75);
            hooks.connect(sim.now_us() + S, 1, 2);
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn an_observer_sees_every_event_wakes_on_time_and_its_actions_are_carried_out() {
        let mut o = (crate::scenario::find("handshake").expect("exists").build)(3, 1, 20 * S);
        // Only 0-1 connect by script; 1-2 is the observer's doing.
        o.script.retain(|(_, a)| *a == Action::Connect(0, 1));
        let mut sim = Sim::with_observer(o, Some(Box::new(Probe::default())));
        sim.run(&mut |_, _| {}).expect("no violation");
        let probe = sim.observer::<Probe>().expect("a probe");
        assert_eq!(probe.woke_at_us, vec![(3 * S, 7)]);
        // Each connection is announced at both ends.
        assert_eq!(probe.connected, 4);
        assert_eq!(sim.peers(1), &[0, 2]);
        let score = sim.core(0).expect("up").inspect().trust_of(sim.agent(1));
        assert!((0.75..0.8).contains(&score), "node 0's impression of node 1: {score}");
    }
}
