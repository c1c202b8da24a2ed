//! A client of central's own admin API, for every CLI subcommand but `init` and `serve`
//! (`taplink-central venue …`, `enroll-code`, `kiosk-code …`).
//!
//! The registry and the venue documents are held open by the running server, which keeps
//! documents in memory and compacts them on disk; a second process editing the databases
//! behind its back could have its change dropped by the next compaction, would never sync
//! it to the hub, and would read a view the server does not have. So these subcommands ask
//! the running server over HTTP, at `http_listen` (a wildcard address is reached on loopback),
//! with the admin token from `<data dir>/admin-token` or `TAPLINK_ADMIN_TOKEN`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use taplink_sync_proto::ids::{GrantId, VenueId};

use crate::Config;
use crate::http::{
    CreateEnrollmentCodeRequest, CreateKioskCodeRequest, CreateVenueRequest, EnrollmentCodeJson,
    ErrorBody, KioskCodeJson, KioskCodeList, VenueJson, VenueList,
};

/// The environment variable that overrides the admin token file.
pub const ADMIN_TOKEN_ENV: &str = "TAPLINK_ADMIN_TOKEN";

/// Longest wait for central's answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to central's admin API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminClientError {
    /// The admin token file could not be read; set `TAPLINK_ADMIN_TOKEN` instead.
    #[error("cannot read the admin token from {path} ({source}); set {ADMIN_TOKEN_ENV} instead")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Central did not answer: it is not running, or listens elsewhere.
    #[error(
        "central does not answer at {url} ({source}); start it with taplink-central serve (only the running server reads and changes its databases; nothing was changed)"
    )]
    Unreachable {
        /// What was asked.
        url: String,
        /// What the HTTP client saw.
        source: reqwest::Error,
    },
    /// Central refused the request.
    #[error("central refused: {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Central's sentence.
        message: String,
    },
    /// Central's answer was not what this CLI expects (another version?).
    #[error("unexpected answer from central: {0}")]
    Malformed(String),
}

/// The admin API of the central configured by a [`Config`].
#[derive(Debug)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// A client for the central `config` describes.
    pub fn for_config(config: &Config) -> Result<AdminClient, AdminClientError> {
        let token = match std::env::var(ADMIN_TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
            _ => {
                let path = config.data().admin_token();
                std::fs::read_to_string(&path)
                    .map_err(|source| AdminClientError::Token { path, source })?
                    .trim()
                    .to_owned()
            }
        };
        Ok(AdminClient::new(local_addr(config.http_listen), token))
    }

    /// A client for the admin API at `addr` with `token`.
    pub fn new(addr: SocketAddr, token: String) -> AdminClient {
        let http = reqwest::Client::builder()
            .no_proxy()
            .use_preconfigured_tls(taplink_certs::tls::plain_http_client_config())
            .timeout(TIMEOUT)
            .user_agent(format!(
                "{}{}",
                crate::http::CLI_USER_AGENT,
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            // With a given TLS configuration, no proxies and no system configuration,
            // building cannot fail.
            .unwrap_or_default();
        AdminClient {
            http,
            base: format!("http://{addr}/api/v1"),
            token,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<Option<T>, AdminClientError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| AdminClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| AdminClientError::Unreachable { url, source })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(AdminClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        if body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| AdminClientError::Malformed(e.to_string()))
    }

    /// `POST /venues`.
    pub async fn create_venue(
        &self,
        request: &CreateVenueRequest,
    ) -> Result<VenueJson, AdminClientError> {
        let url = format!("{}/venues", self.base);
        self.send(self.http.post(&url).json(request), url)
            .await?
            .ok_or_else(|| AdminClientError::Malformed("an empty answer".into()))
    }

    /// `POST /users`.
    pub async fn create_user(
        &self,
        request: &crate::http::CreateUserRequest,
    ) -> Result<crate::http::UserJson, AdminClientError> {
        let url = format!("{}/users", self.base);
        self.send(self.http.post(&url).json(request), url)
            .await?
            .ok_or_else(|| AdminClientError::Malformed("an empty answer".into()))
    }

    /// `GET /venues`, every page.
    pub async fn list_venues(&self) -> Result<VenueList, AdminClientError> {
        let mut all = VenueList {
            venues: Vec::new(),
            next_cursor: None,
        };
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                None => format!("{}/venues?limit=1000", self.base),
                Some(c) => format!("{}/venues?limit=1000&cursor={c}", self.base),
            };
            let page: VenueList = self
                .send(self.http.get(&url), url)
                .await?
                .ok_or_else(|| AdminClientError::Malformed("an empty answer".into()))?;
            all.venues.extend(page.venues);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// `POST /venues/{venue}/enrollment-codes`.
    pub async fn create_enrollment_code(
        &self,
        venue: VenueId,
        request: &CreateEnrollmentCodeRequest,
    ) -> Result<EnrollmentCodeJson, AdminClientError> {
        let url = format!("{}/venues/{venue}/enrollment-codes", self.base);
        self.send(self.http.post(&url).json(request), url)
            .await?
            .ok_or_else(|| AdminClientError::Malformed("an empty answer".into()))
    }

    /// `POST /venues/{venue}/kiosk-codes`.
    pub async fn create_kiosk_code(
        &self,
        venue: VenueId,
        request: &CreateKioskCodeRequest,
    ) -> Result<KioskCodeJson, AdminClientError> {
        let url = format!("{}/venues/{venue}/kiosk-codes", self.base);
        self.send(self.http.post(&url).json(request), url)
            .await?
            .ok_or_else(|| AdminClientError::Malformed("an empty answer".into()))
    }

    /// `GET /venues/{venue}/kiosk-codes`.
    pub async fn list_kiosk_codes(
        &self,
        venue: VenueId,
    ) -> Result<KioskCodeList, AdminClientError> {
        let url = format!("{}/venues/{venue}/kiosk-codes", self.base);
        self.send(self.http.get(&url), url)
            .await?
            .ok_or_else(|| AdminClientError::Malformed("an empty answer".into()))
    }

    /// `DELETE /venues/{venue}/kiosk-codes/{grant}`.
    pub async fn revoke_kiosk_code(
        &self,
        venue: VenueId,
        grant: GrantId,
    ) -> Result<(), AdminClientError> {
        let url = format!("{}/venues/{venue}/kiosk-codes/{grant}", self.base);
        self.send::<serde_json::Value>(self.http.delete(&url), url)
            .await
            .map(drop)
    }
}

/// Where to reach a server listening on `listen` from this machine.
fn local_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(local_addr(addr("0.0.0.0:8480")), addr("127.0.0.1:8480"));
        assert_eq!(local_addr(addr("[::]:8480")), addr("[::1]:8480"));
        assert_eq!(local_addr(addr("10.0.0.5:8480")), addr("10.0.0.5:8480"));
    }
}
