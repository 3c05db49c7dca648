//! Transfer tokens and sealed cookies: the checks that need the store, the
//! clock and the counters around `crate::tokens`.

use sessiond_protocol::{
    ErrorCode, Expiry, HostToken, IssueTransfer, RedeemTransfer, Seal, Sealed, SealedCookie, SessionKey,
    TransferIssued, Unsealed,
};

use super::{Reject, Service, check_user, not_found, reject};
use crate::answer::Refusal;
use crate::stats::Stats;
use crate::tokens::{CookieClaims, Reject as TokenReject, SealError, TransferClaims, canonical_host};
use crate::writer::Op;

impl Service {
    /// Refuses a token or cookie: one answer for every reason, the reason
    /// to the log and the counters.
    pub(super) fn token_rejected(&self, reason: TokenReject, what: &str) -> Reject {
        self.stats.token_rejected(reason);
        tracing::info!(reason = reason.name(), "{what} rejected");
        Refusal::TokenRejected.into()
    }

    pub(super) fn issue_transfer(&self, issue: IssueTransfer) -> Result<TransferIssued, Reject> {
        let now = self.clock.now_ms();
        let session = self.key(&issue.key)?;
        self.ttl.live(&session, now).ok_or_else(not_found)?;
        let site = |host: &str| match canonical_host(host) {
            Some(h) if self.tokens.is_site(&h) => Ok(h),
            _ => Err(reject(ErrorCode::BadRequest, format!("{host:?} is not one of transfer.sites"))),
        };
        let src = site(&issue.source_host)?;
        let destinations = match issue.destinations.is_empty() {
            true => self.tokens.config().sites.iter().filter(|s| **s != src).cloned().collect(),
            false => issue.destinations.iter().map(|d| site(d)).collect::<Result<Vec<_>, _>>()?,
        };
        if destinations.contains(&src) {
            return Err(reject(ErrorCode::BadRequest, "the source cannot be a destination"));
        }
        let bind = match issue.state_hash {
            None => [0u8; 32],
            Some(hash) if destinations.len() == 1 => hash
                .try_into()
                .map_err(|_| reject(ErrorCode::BadRequest, "state_hash is the 32-byte SHA-256 of the state"))?,
            Some(_) => return Err(reject(ErrorCode::BadRequest, "browser binding needs a single destination")),
        };
        let mut tokens = Vec::with_capacity(destinations.len());
        for dst in destinations {
            let claims = TransferClaims {
                iat_ms: now,
                exp_ms: now + self.tokens.config().transfer_ttl_ms,
                src: src.clone(),
                dst,
                session: *session.as_bytes(),
                bind,
            };
            let token = self.tokens.issue_transfer(&claims).map_err(|e| reject(ErrorCode::Internal, e.to_string()))?;
            tokens.push(HostToken { host: claims.dst, token });
        }
        Stats::add(&self.stats.tokens_issued, tokens.len() as u64);
        Ok(TransferIssued { tokens })
    }

    /// Checks everything a transfer token says; single use and the source
    /// session are checked by the writer, in the redeeming transaction.
    pub(super) fn redeem(&self, r: RedeemTransfer) -> Result<Op, Reject> {
        let now = self.clock.now_ms();
        let host = canonical_host(&r.host).ok_or_else(|| self.token_rejected(TokenReject::Host, "transfer token"))?;
        let (claims, nonce) = self
            .tokens
            .open_transfer(&r.token, &host, r.state.as_deref(), now)
            .map_err(|reason| self.token_rejected(reason, "transfer token"))?;
        // An unreadable current cookie is no session at all.
        let current = r.current_key.and_then(|k| Some((crate::keys::id_of_text(&k).ok()?, k)));
        Ok(Op::Redeem {
            nonce,
            exp_ms: claims.exp_ms,
            valid_until_ms: claims.exp_ms.saturating_add(self.tokens.config().skew_ms),
            source: SessionKey::from_bytes(claims.session),
            current,
            always_replace: r.always_replace,
        })
    }

    pub(super) fn seal(&self, s: Seal) -> Result<Sealed, Reject> {
        let now = self.clock.now_ms();
        let fields = self.check_fields(s.fields)?;
        check_cookie_name(&s.cookie_name)?;
        let host = canonical_host(&s.host).ok_or_else(|| reject(ErrorCode::BadRequest, "host is not a host name"))?;
        if let Some(user) = &s.user {
            check_user(user)?;
        }
        let c = self.tokens.config();
        let max_abs = now.saturating_add(c.cookie_max_age_ms);
        let (idle_ms, abs_exp_ms) = match s.expiry {
            Expiry::Default | Expiry::BrowserClose => (c.cookie_idle_ms, max_abs),
            Expiry::IdleSecs(secs) => (u64::from(secs) * 1000, max_abs),
            Expiry::At(at) => (0, at.min(max_abs)),
        };
        let mut sid = [0u8; 16];
        getrandom::fill(&mut sid).map_err(|e| reject(ErrorCode::Internal, e.to_string()))?;
        let epoch = self.cookie_state(s.user.as_deref(), &sid)?.0;
        let claims = CookieClaims {
            sid,
            iat_ms: now,
            seen_ms: now,
            abs_exp_ms,
            idle_secs: u32::try_from(idle_ms / 1000).unwrap_or(u32::MAX),
            epoch,
            user: s.user,
            fields,
        };
        let value = self.seal_claims(&claims, &s.cookie_name, &host)?;
        Ok(Sealed { value, expires_at_ms: claims.expires_at_ms() })
    }

    pub(super) fn seal_claims(&self, claims: &CookieClaims, name: &str, host: &str) -> Result<String, Reject> {
        let value = self.tokens.seal_cookie(claims, name, host).map_err(|e| match e {
            SealError::TooLarge { .. } => reject(ErrorCode::TooLarge, e.to_string()),
            SealError::Random(_) => reject(ErrorCode::Internal, e.to_string()),
        })?;
        Stats::add(&self.stats.cookies_sealed, 1);
        Ok(value)
    }

    /// Opens a sealed cookie and checks it has not been revoked.
    pub(super) fn open_cookie(&self, c: &SealedCookie) -> Result<CookieClaims, Reject> {
        let now = self.clock.now_ms();
        let host = canonical_host(&c.host).ok_or_else(|| self.token_rejected(TokenReject::Host, "sealed cookie"))?;
        let claims = self
            .tokens
            .open_cookie(&c.value, &c.cookie_name, &host, now)
            .map_err(|reason| self.token_rejected(reason, "sealed cookie"))?;
        let (epoch, denied) = self.cookie_state(claims.user.as_deref(), &claims.sid)?;
        if denied || claims.epoch < epoch {
            return Err(self.token_rejected(TokenReject::Revoked, "sealed cookie"));
        }
        Ok(claims)
    }

    pub(super) fn unseal(&self, c: &SealedCookie) -> Result<Unsealed, Reject> {
        let mut claims = self.open_cookie(c)?;
        Stats::add(&self.stats.cookies_opened, 1);
        let now = self.clock.now_ms();
        let host = canonical_host(&c.host).expect("checked when opening");
        let reseal = if now.saturating_sub(claims.seen_ms) >= self.tokens.config().reseal_after_ms {
            claims.seen_ms = now;
            Some(self.seal_claims(&claims, &c.cookie_name, &host)?)
        } else {
            None
        };
        Ok(Unsealed {
            expires_at_ms: claims.expires_at_ms(),
            sid: claims.sid.iter().map(|b| format!("{b:02x}")).collect(),
            fields: claims.fields,
            user: claims.user,
            reseal,
        })
    }

    pub(super) fn cookie_state(&self, user: Option<&str>, sid: &[u8; 16]) -> Result<(u32, bool), Reject> {
        Stats::add(&self.stats.db_reads, 1);
        self.store.cookie_state(user, sid).map_err(|e| {
            tracing::error!(error = %e, "reading cookie revocations failed");
            reject(ErrorCode::Internal, "read failed")
        })
    }
}

/// Cookie names are RFC 6265 tokens: visible ASCII but separators.
fn check_cookie_name(name: &str) -> Result<(), Reject> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if ok { Ok(()) } else { Err(reject(ErrorCode::BadRequest, format!("{name:?} is not a cookie name"))) }
}
