//! Who may use a route, declared where the route is registered.
//!
//! Every node builds its router through [`Routes`]: `.route(path, Access::Staff, get(h))`.
//! There is no way to add a route without an [`Access`], and the node's [`Gate`] turns
//! each access into the layer that enforces it (a bearer-token check, a loopback check…),
//! so a handler never checks credentials itself and the list of routes with their access
//! ([`Routes::declared`]) is exactly what the router enforces. Tests enumerate that list
//! and try every route anonymously.

use axum::Router;
use axum::routing::MethodRouter;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Access {
    /// Anyone who can reach the listener: liveness and metrics (counts, no identifiers or
    /// content).
    Public,
    /// Anyone, but only with a one-time secret the request carries (a pairing id, a kiosk
    /// code): each failed secret counts against the client in the guessing throttle.
    Secret,
    /// A kiosk with an active device token issued by this hub.
    Kiosk,
    /// Venue staff with a staff token of this hub.
    Staff,
    /// Any signed-in person of central (a session, with the CSRF token on writes), or the
    /// admin token, whatever their role.
    User,
    /// A signed-in person whose role and scope allow this action on the route's venue
    /// (`taplink_sync_proto::authz::authorize`), or the admin token. Written
    /// `act:<action>` in the route tables.
    Act(taplink_sync_proto::authz::Action),
    /// Only processes on this machine (a loopback peer address): the kiosk's player page.
    Loopback,
}

impl Access {
    /// The name used in docs and in the route table of `docs/security.md`.
    pub fn name(self) -> String {
        match self {
            Access::Act(action) => format!("act:{action}"),
            other => other.as_str().to_owned(),
        }
    }

    /// The name of an access without an action (`act:…` gives `act`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Act(_) => "act",
            Access::Public => "public",
            Access::Secret => "secret",
            Access::Kiosk => "kiosk",
            Access::Staff => "staff",
            Access::User => "user",
            Access::Loopback => "loopback",
        }
    }
}

/// One route: its path template, its methods and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The axum path template (`/api/v1/media/{hash}`).
    pub path: &'static str,
    /// The methods registered on it (`GET`, `POST`…).
    pub methods: &'static [&'static str],
    /// Who may use it.
    pub access: Access,
}

/// How a node enforces each [`Access`]: wraps a route's handlers in the layer that checks
/// it.
pub trait Gate<S> {
    /// `route` guarded for `access`.
    fn guard(&self, access: Access, route: MethodRouter<S>) -> MethodRouter<S>;
}

/// A router under construction whose every route declares its access.
#[derive(Debug)]
pub struct Routes<S> {
    router: Router<S>,
    declared: Vec<Declared>,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            declared: Vec::new(),
        }
    }

    /// Add `route` at `path` for `methods` (as listed in the docs), enforced by `gate`.
    pub fn route(
        mut self,
        gate: &impl Gate<S>,
        path: &'static str,
        methods: &'static [&'static str],
        access: Access,
        route: MethodRouter<S>,
    ) -> Self {
        self.declared.push(Declared {
            path,
            methods,
            access,
        });
        self.router = self.router.route(path, gate.guard(access, route));
        self
    }

    /// Both sets of routes in one.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.declared.extend(other.declared);
        self.router = self.router.merge(other.router);
        self
    }

    /// Apply a layer to every route added so far (a body limit, say).
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }

    /// Every route with its access.
    pub fn declared(&self) -> &[Declared] {
        &self.declared
    }

    /// The router and the declarations.
    pub fn into_parts(self) -> (Router<S>, Vec<Declared>) {
        (self.router, self.declared)
    }
}

/// Compare the declared routes with the table between `<!-- routes:SECTION -->` and
/// `<!-- /routes:SECTION -->` in `markdown` (rows `| METHOD | `path` | access |`): `Err`
/// lists every route missing from either side or documented with another access.
pub fn check_documented(
    declared: &[Declared],
    markdown: &str,
    section: &str,
) -> Result<(), String> {
    let open = format!("<!-- routes:{section} -->");
    let close = format!("<!-- /routes:{section} -->");
    let table = markdown
        .split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(table, _)| table)
        .ok_or_else(|| format!("no {open} … {close} table"))?;
    let mut documented: Vec<(String, String, String)> = table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            match cells.as_slice() {
                [method, path, access] if path.starts_with('`') => Some((
                    (*method).to_owned(),
                    path.trim_matches('`').to_owned(),
                    (*access).to_owned(),
                )),
                _ => None,
            }
        })
        .collect();
    let mut code: Vec<(String, String, String)> = declared
        .iter()
        .flat_map(|d| {
            d.methods
                .iter()
                .map(|m| ((*m).to_owned(), d.path.to_owned(), d.access.name()))
        })
        .collect();
    documented.sort();
    code.sort();
    if documented == code {
        return Ok(());
    }
    let only_code: Vec<_> = code.iter().filter(|r| !documented.contains(r)).collect();
    let only_docs: Vec<_> = documented.iter().filter(|r| !code.contains(r)).collect();
    Err(format!(
        "routes in the code but not in docs/security.md ({section}): {only_code:?}; in the docs but not the code: {only_docs:?}"
    ))
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}
