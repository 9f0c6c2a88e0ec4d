//! Originating and terminating routing, the last sproutlet of the S-CSCF chain.
//!
//! A request from one of our users (it came through our Service-Route, whose Route value
//! carries `;orig`) gets a P-Asserted-Identity of the served user when it has none, loses
//! the Proxy-Authorization the authentication sproutlet checked, and goes to its target.
//! A request to a user of the home domain is forked to every registered contact, each
//! through the Path it registered with (RFC 3327), highest q first; 480 when the user has
//! no binding, 404 when there is no such user.

use proxy::Target;
use sip::{HeaderName, Host, Message};

use super::authentication::served_user;
use super::{
    Answer, Cx, Decision, Facts, LookupFailure, Query, Settings, Sproutlet, SproutletTsx,
    Versioned, aor_of, is_originating, unexpected,
};

/// The S-CSCF's routing sproutlet: takes whatever the sproutlets before it passed on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scscf;

impl Sproutlet for Scscf {
    fn name(&self) -> &'static str {
        "scscf"
    }

    fn get_tsx(&self, _req: &Message<'_>, _settings: &Settings) -> Option<Box<dyn SproutletTsx>> {
        Some(Box::new(ScscfTsx::default()))
    }
}

#[derive(Debug, Default)]
enum Waiting {
    #[default]
    Nothing,
    /// The called user's bindings.
    Bindings,
    /// Whether the called user exists.
    Exists,
}

#[derive(Debug, Default)]
struct ScscfTsx {
    /// The called user of the home domain.
    aor: String,
    add_headers: Vec<(&'static str, Vec<u8>)>,
    remove_headers: Vec<HeaderName>,
    waiting: Waiting,
}

impl SproutletTsx for ScscfTsx {
    fn on_initial_request(
        &mut self,
        req: &Message<'_>,
        facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        if is_originating(req) {
            let Some(served) = served_user(req) else {
                return Decision::status(400);
            };
            if facts.proxy_authenticated {
                self.remove_headers.push(HeaderName::ProxyAuthorization);
            }
            if req.header(HeaderName::PAssertedIdentity).is_none() {
                self.add_headers
                    .push(("P-Asserted-Identity", format!("<{served}>").into_bytes()));
            }
            if !is_home(cx.settings, req) {
                return self.elsewhere(req);
            }
        }
        self.terminate(req)
    }

    fn on_answer(
        &mut self,
        _req: &Message<'_>,
        answer: Answer,
        _facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        match (std::mem::take(&mut self.waiting), answer) {
            (Waiting::Bindings, Answer::Aor(stored)) => match stored {
                Ok(stored) => self.fork(&stored, cx.now_s),
                Err(_) => Decision::status(500),
            },
            (Waiting::Exists, Answer::Exists(exists)) => match exists {
                Ok(true) => Decision::status(480),
                Ok(false) | Err(LookupFailure::NotFound(_)) => Decision::status(404),
                Err(LookupFailure::Unavailable(_)) => Decision::status(504),
            },
            _ => unexpected(),
        }
    }
}

impl ScscfTsx {
    /// Terminating treatment: the called user's bindings.
    fn terminate(&mut self, req: &Message<'_>) -> Decision {
        let Some(aor) = req
            .request_uri()
            .and_then(Result::ok)
            .and_then(|uri| aor_of(&uri))
        else {
            return Decision::status(404);
        };
        self.aor = aor;
        self.waiting = Waiting::Bindings;
        Decision::read_aor(&self.aor)
    }

    /// Another domain: where the Request-URI says. Anything needing DNS (and a BGCF) is
    /// not the data plane's to do.
    fn elsewhere(&mut self, req: &Message<'_>) -> Decision {
        let Some(uri) = req.request_uri_raw() else {
            return Decision::status(400);
        };
        match Target::to_uri(uri) {
            Some(target) => Decision::Forward(vec![self.dress(Target {
                request_uri: None,
                ..target
            })]),
            None => Decision::status(503),
        }
    }

    fn fork(&mut self, stored: &Versioned, now_s: u64) -> Decision {
        let mut bindings: Vec<_> = stored
            .state
            .bindings
            .values()
            .filter(|b| b.expires > now_s)
            .collect();
        bindings.sort_by_key(|b| std::cmp::Reverse(b.priority));
        let targets: Vec<Target> = bindings
            .iter()
            .filter_map(|b| {
                let routes = b.paths.iter().map(|p| p.as_bytes().to_vec()).collect();
                Target::via_routes(b.uri.as_bytes(), routes)
            })
            .map(|t| self.dress(t))
            .collect();
        if !targets.is_empty() {
            return Decision::Forward(targets);
        }
        self.waiting = Waiting::Exists;
        Decision::Ask(Query::Exists {
            impu: self.aor.clone(),
        })
    }

    fn dress(&self, target: Target) -> Target {
        Target {
            add_headers: self.add_headers.clone(),
            remove_headers: self.remove_headers.clone(),
            ..target
        }
    }
}

fn is_home(settings: &Settings, req: &Message<'_>) -> bool {
    req.request_uri()
        .and_then(Result::ok)
        .is_some_and(|uri| {
            matches!(uri.host(), Some(Host::Domain(d)) if d.eq_ignore_ascii_case(settings.home_domain.as_bytes()))
        })
}
