//! The chain a request passes along: each sproutlet in turn may take it; one that takes
//! it answers, forwards, asks for lookups, or hands it to the next with what it learnt.

use proxy::Target;
use sip::Message;

use super::{
    Answer, Authentication, Cx, Decision, Facts, Query, RegEvent, Registrar, Response, Scscf,
    Sproutlet, SproutletTsx,
};

/// Sproutlets in the order a request visits them.
#[derive(Debug)]
pub struct Chain {
    sproutlets: Vec<Box<dyn Sproutlet>>,
}

/// Where a request is in the chain.
#[derive(Debug, Default)]
pub struct Run {
    /// The sproutlet holding the request.
    at: usize,
    tsx: Option<Box<dyn SproutletTsx>>,
    facts: Facts,
}

impl Run {
    /// The sproutlet holding the request, if any.
    pub fn at(&self) -> usize {
        self.at
    }
}

/// What the engine does next with a request.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run the query and call [`Chain::answer`] with its answer.
    Ask(Query),
    /// Answer the request.
    Respond(Response),
    /// Forward the request to these branches.
    Forward(Vec<Target>),
}

impl Chain {
    /// A chain of these sproutlets, in order.
    pub fn new(sproutlets: Vec<Box<dyn Sproutlet>>) -> Self {
        Self { sproutlets }
    }

    /// The S-CSCF: authentication, registrar, reg-event, originating/terminating routing.
    pub fn scscf() -> Self {
        Self::new(vec![
            Box::new(Authentication),
            Box::new(Registrar),
            Box::new(RegEvent),
            Box::new(Scscf),
        ])
    }

    /// The names of the sproutlets, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sproutlets.iter().map(|s| s.name())
    }

    /// Starts `req` at the head of the chain.
    pub fn start(&self, req: &Message<'_>, cx: &mut Cx<'_>) -> (Run, Step) {
        let mut run = Run::default();
        let step = self.pass_from(0, &mut run, req, cx);
        (run, step)
    }

    /// Hands the answer to the query of the transaction holding `run`'s request.
    pub fn answer(
        &self,
        run: &mut Run,
        req: &Message<'_>,
        answer: Answer,
        cx: &mut Cx<'_>,
    ) -> Step {
        let Some(tsx) = run.tsx.as_mut() else {
            return Step::Respond(status(500));
        };
        let decision = tsx.on_answer(req, answer, &mut run.facts, cx);
        self.follow(decision, run, req, cx)
    }

    /// Offers the request to the sproutlets from `from` on.
    fn pass_from(&self, from: usize, run: &mut Run, req: &Message<'_>, cx: &mut Cx<'_>) -> Step {
        for (at, sproutlet) in self.sproutlets.iter().enumerate().skip(from) {
            if let Some(mut tsx) = sproutlet.get_tsx(req, cx.settings) {
                let decision = tsx.on_initial_request(req, &mut run.facts, cx);
                run.at = at;
                run.tsx = Some(tsx);
                return self.follow(decision, run, req, cx);
            }
        }
        // Nothing serves it: a chain without a final router.
        run.tsx = None;
        Step::Respond(status(404))
    }

    fn follow(
        &self,
        decision: Decision,
        run: &mut Run,
        req: &Message<'_>,
        cx: &mut Cx<'_>,
    ) -> Step {
        match decision {
            Decision::Respond(response) => Step::Respond(response),
            Decision::Forward(targets) => Step::Forward(targets),
            Decision::Ask(query) => Step::Ask(query),
            Decision::Next => self.pass_from(run.at + 1, run, req, cx),
        }
    }
}

fn status(status: u16) -> Response {
    Response {
        status,
        to_tag: None,
        headers: Vec::new(),
    }
}
