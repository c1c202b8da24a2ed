//! Who may do what, where: the one permission model of central and of the hubs.
//!
//! The model is data: [`PERMISSIONS`] lists, per [`Role`], the [`Action`]s it may take, and
//! [`authorize`] is the one pure function every route calls (central online, a hub
//! offline against its roster). A person's reach is their role's actions *within their
//! [`Scope`]*: a set of venues and/or venue tags (`region:north`), so one technician covers
//! a region without a grant per venue. `admin` acts everywhere, on the whole organisation.
//!
//! Actions on the organisation as a whole ([`Action::is_org_wide`]: creating venues, the
//! media library, users) are admin-only; tokens are every role's own business, scoped to
//! at most their creator's reach (checked where tokens are made, with
//! [`Scope::is_within`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::VenueId;

/// A person's (or a token's) role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, in every venue: venues, users, tokens, content, devices.
    Admin,
    /// In its venues: enroll hubs, kiosk codes, pair and revoke kiosks, hub and kiosk
    /// health. No content, no users.
    Technician,
    /// In its venues: media, playlists, items, schedules, assignments, kiosk names and
    /// groups.
    StoreStaff,
    /// Read-only, in its venues.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Technician,
        Role::StoreStaff,
        Role::Viewer,
    ];

    /// The role's name as the API and the command line write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::StoreStaff => "store_staff",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; one of: admin, technician, store_staff, viewer")]
pub struct ParseRoleError(String);

impl FromStr for Role {
    type Err = ParseRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseRoleError(s.to_owned()))
    }
}

/// Something a route does. Every route of central and of the hub declares one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read a venue: its settings, document, kiosks, hubs' status.
    VenueRead,
    /// Create a venue (organisation-wide).
    VenueCreate,
    /// Change a venue's settings: name, time zone, tags.
    VenueEdit,
    /// Enroll a hub for a venue (enrollment codes).
    HubEnroll,
    /// Revoke a venue's hub.
    HubRevoke,
    /// Create, list and revoke kiosk codes.
    KioskCodeManage,
    /// Approve and revoke kiosk pairings.
    PairingManage,
    /// Read hub and kiosk health, telemetry and proof of play.
    HealthRead,
    /// Rename kiosks, set their group and orientation, remove them.
    KioskEdit,
    /// Upload and delete a venue's media.
    MediaWrite,
    /// Create, edit and remove playlists and their items, schedules and assignments.
    ContentWrite,
    /// Change the organisation's media library and defaults (organisation-wide).
    OrgWrite,
    /// Manage users (organisation-wide).
    UserManage,
    /// Make, list and revoke one's own API tokens (never wider than one's own reach).
    TokenManage,
    /// Read the audit log.
    AuditRead,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 15] = [
        Action::VenueRead,
        Action::VenueCreate,
        Action::VenueEdit,
        Action::HubEnroll,
        Action::HubRevoke,
        Action::KioskCodeManage,
        Action::PairingManage,
        Action::HealthRead,
        Action::KioskEdit,
        Action::MediaWrite,
        Action::ContentWrite,
        Action::OrgWrite,
        Action::UserManage,
        Action::TokenManage,
        Action::AuditRead,
    ];

    /// Whether the action concerns the organisation as a whole rather than one venue.
    pub fn is_org_wide(self) -> bool {
        matches!(
            self,
            Action::VenueCreate | Action::OrgWrite | Action::UserManage | Action::TokenManage
        )
    }

    /// The action's name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::VenueRead => "venue_read",
            Action::VenueCreate => "venue_create",
            Action::VenueEdit => "venue_edit",
            Action::HubEnroll => "hub_enroll",
            Action::HubRevoke => "hub_revoke",
            Action::KioskCodeManage => "kiosk_code_manage",
            Action::PairingManage => "pairing_manage",
            Action::HealthRead => "health_read",
            Action::KioskEdit => "kiosk_edit",
            Action::MediaWrite => "media_write",
            Action::ContentWrite => "content_write",
            Action::OrgWrite => "org_write",
            Action::UserManage => "user_manage",
            Action::TokenManage => "token_manage",
            Action::AuditRead => "audit_read",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The permission table: what each role may do (within its scope). `admin` may do
/// everything; the table says so explicitly, so that a new action is a decision for every
/// role.
pub const PERMISSIONS: &[(Role, &[Action])] = &[
    (Role::Admin, &Action::ALL),
    (
        Role::Technician,
        &[
            Action::VenueRead,
            Action::HubEnroll,
            Action::HubRevoke,
            Action::KioskCodeManage,
            Action::PairingManage,
            Action::HealthRead,
            Action::TokenManage,
            Action::AuditRead,
        ],
    ),
    (
        Role::StoreStaff,
        &[
            Action::VenueRead,
            Action::HealthRead,
            Action::KioskEdit,
            Action::MediaWrite,
            Action::ContentWrite,
            Action::TokenManage,
        ],
    ),
    (
        Role::Viewer,
        &[
            Action::VenueRead,
            Action::HealthRead,
            Action::TokenManage,
            Action::AuditRead,
        ],
    ),
];

/// Whether `role` may take `action` somewhere (the table, before scope).
pub fn role_allows(role: Role, action: Action) -> bool {
    PERMISSIONS
        .iter()
        .any(|(r, actions)| *r == role && actions.contains(&action))
}

/// A venue tag, e.g. `region:north` or `flagship`: 1 to 64 characters of lowercase ASCII
/// letters, digits, `-`, `_`, `:` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VenueTag(String);

/// The text is not a venue tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a venue tag: 1 to 64 characters of a-z, 0-9, '-', '_', ':' and '.' (e.g. region:north)"
)]
pub struct ParseTagError(String);

impl VenueTag {
    /// The tag's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for VenueTag {
    type Err = ParseTagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'_' | b':' | b'.')
            });
        if ok {
            Ok(VenueTag(s.to_owned()))
        } else {
            Err(ParseTagError(s.to_owned()))
        }
    }
}

impl TryFrom<String> for VenueTag {
    type Error = ParseTagError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<VenueTag> for String {
    fn from(t: VenueTag) -> String {
        t.0
    }
}

impl fmt::Display for VenueTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a principal may act: these venues, and every venue carrying one of these tags.
/// (An admin's scope is ignored: admins act everywhere.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Venues by id.
    #[serde(default)]
    pub venues: BTreeSet<VenueId>,
    /// Venues by tag.
    #[serde(default)]
    pub tags: BTreeSet<VenueTag>,
}

impl Scope {
    /// Whether the venue `id` with `tags` is in this scope.
    pub fn covers(&self, id: VenueId, tags: &BTreeSet<VenueTag>) -> bool {
        self.venues.contains(&id) || tags.iter().any(|t| self.tags.contains(t))
    }

    /// Whether every venue this scope reaches is reached by `outer` too, whatever tags
    /// venues carry: each venue named here is named by `outer`, and each tag here is one of
    /// `outer`'s. (A venue named here that `outer` reaches only by a tag is *not* within:
    /// its tags may change.)
    pub fn is_within(&self, outer: &Scope) -> bool {
        self.venues.is_subset(&outer.venues) && self.tags.is_subset(&outer.tags)
    }
}

/// Who is acting: a role within a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The role.
    pub role: Role,
    /// Where it applies (ignored for admins).
    pub scope: Scope,
}

/// What an action is about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The organisation as a whole (organisation-wide actions, and lists that are then
    /// filtered venue by venue).
    Org,
    /// One venue, with the tags it carries now.
    Venue {
        /// The venue.
        id: VenueId,
        /// Its tags.
        tags: &'a BTreeSet<VenueTag>,
    },
}

/// Why [`authorize`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The role does not include the action.
    #[error("your role ({role}) does not allow {action}; ask an admin if you need it")]
    Role {
        /// The principal's role.
        role: Role,
        /// What was asked.
        action: Action,
    },
    /// The venue is outside the principal's scope.
    #[error("this venue is outside your venues; ask an admin to add it to your scope")]
    OutOfScope,
    /// An organisation-wide action for a role that acts only in its venues.
    #[error("only an admin may {action}")]
    AdminOnly {
        /// What was asked.
        action: Action,
    },
}

/// May `principal` take `action` on `target`? The one permission check of every route.
pub fn authorize(principal: &Principal, action: Action, target: Target<'_>) -> Result<(), Denied> {
    let role = principal.role;
    if !role_allows(role, action) {
        return Err(Denied::Role { role, action });
    }
    if role == Role::Admin {
        return Ok(());
    }
    match target {
        // Tokens are a principal's own business (their scope is checked where they are
        // made); other organisation-wide actions are admins'.
        Target::Org if action == Action::TokenManage => Ok(()),
        Target::Org if action.is_org_wide() => Err(Denied::AdminOnly { action }),
        // A venue action asked without a venue: a list, filtered venue by venue after.
        Target::Org => Ok(()),
        Target::Venue { id, tags } => {
            if action.is_org_wide() && action != Action::TokenManage {
                Err(Denied::AdminOnly { action })
            } else if principal.scope.covers(id, tags) {
                Ok(())
            } else {
                Err(Denied::OutOfScope)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected matrix, written for a reviewer: for each action, which roles may take
    /// it in a venue of their scope (`A`dmin, `T`echnician, `S`tore staff, `V`iewer).
    const MATRIX: &[(Action, &str)] = &[
        (Action::VenueRead, "ATSV"),
        (Action::VenueCreate, "A"),
        (Action::VenueEdit, "A"),
        (Action::HubEnroll, "AT"),
        (Action::HubRevoke, "AT"),
        (Action::KioskCodeManage, "AT"),
        (Action::PairingManage, "AT"),
        (Action::HealthRead, "ATSV"),
        (Action::KioskEdit, "AS"),
        (Action::MediaWrite, "AS"),
        (Action::ContentWrite, "AS"),
        (Action::OrgWrite, "A"),
        (Action::UserManage, "A"),
        (Action::TokenManage, "ATSV"),
        (Action::AuditRead, "ATV"),
    ];

    fn letter(role: Role) -> char {
        match role {
            Role::Admin => 'A',
            Role::Technician => 'T',
            Role::StoreStaff => 'S',
            Role::Viewer => 'V',
        }
    }

    fn tag(s: &str) -> VenueTag {
        s.parse().unwrap()
    }

    #[test]
    fn the_matrix_holds_in_scope_and_nothing_holds_out_of_scope() {
        assert_eq!(MATRIX.len(), Action::ALL.len(), "every action has a row");
        let ours = VenueId::random();
        let theirs = VenueId::random();
        let north = BTreeSet::from([tag("region:north")]);
        let south = BTreeSet::from([tag("region:south")]);
        let by_id = Scope {
            venues: BTreeSet::from([ours]),
            tags: BTreeSet::new(),
        };
        let by_tag = Scope {
            venues: BTreeSet::new(),
            tags: north.clone(),
        };
        for &(action, allowed) in MATRIX {
            for role in Role::ALL {
                let expected = allowed.contains(letter(role));
                for scope in [&by_id, &by_tag] {
                    let p = Principal {
                        role,
                        scope: scope.clone(),
                    };
                    let in_scope = if scope == &by_id {
                        Target::Venue {
                            id: ours,
                            tags: &south,
                        }
                    } else {
                        Target::Venue {
                            id: theirs,
                            tags: &north,
                        }
                    };
                    let venue_action = !action.is_org_wide() || action == Action::TokenManage;
                    assert_eq!(
                        authorize(&p, action, in_scope).is_ok(),
                        expected && (venue_action || role == Role::Admin),
                        "{role} {action} in scope"
                    );
                    // Out of scope: only admins, ever.
                    let outside = Target::Venue {
                        id: theirs,
                        tags: &south,
                    };
                    let ok = authorize(&p, action, outside).is_ok();
                    assert_eq!(ok, role == Role::Admin, "{role} {action} out of scope");
                }
            }
        }
    }

    #[test]
    fn organisation_wide_actions_are_admins_and_tokens_everyones_own() {
        for role in Role::ALL {
            let p = Principal {
                role,
                scope: Scope::default(),
            };
            for action in [Action::VenueCreate, Action::OrgWrite, Action::UserManage] {
                assert_eq!(
                    authorize(&p, action, Target::Org).is_ok(),
                    role == Role::Admin,
                    "{role} {action}"
                );
            }
            assert!(authorize(&p, Action::TokenManage, Target::Org).is_ok());
        }
        let staff = Principal {
            role: Role::StoreStaff,
            scope: Scope::default(),
        };
        assert_eq!(
            authorize(&staff, Action::UserManage, Target::Org),
            Err(Denied::Role {
                role: Role::StoreStaff,
                action: Action::UserManage
            })
        );
    }

    #[test]
    fn a_token_scope_must_sit_within_its_creators() {
        let v = VenueId::random();
        let creator = Scope {
            venues: BTreeSet::from([v]),
            tags: BTreeSet::from([tag("region:north")]),
        };
        let narrower = Scope {
            venues: BTreeSet::new(),
            tags: BTreeSet::from([tag("region:north")]),
        };
        let wider = Scope {
            venues: BTreeSet::from([VenueId::random()]),
            tags: BTreeSet::new(),
        };
        assert!(narrower.is_within(&creator));
        assert!(creator.is_within(&creator));
        assert!(!wider.is_within(&creator));
    }

    #[test]
    fn roles_and_tags_parse_and_refuse_with_a_sentence() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
        }
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .to_string()
                .contains("store_staff")
        );
        for action in Action::ALL {
            assert_eq!(
                serde_json::to_string(&action).unwrap(),
                format!("\"{}\"", action.as_str())
            );
        }
        assert!("region:north".parse::<VenueTag>().is_ok());
        for bad in ["", "Region", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<VenueTag>().is_err(), "{bad:?}");
        }
        let scope: Scope =
            serde_json::from_str(r#"{"tags":["region:north"],"venues":[]}"#).unwrap();
        assert!(scope.tags.contains(&tag("region:north")));
        assert!(serde_json::from_str::<Scope>(r#"{"tags":["Bad Tag"]}"#).is_err());
    }
}
