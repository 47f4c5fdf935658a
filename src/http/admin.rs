//! `/admin/audit`: the audit trail for the security team, behind the admin
//! tokens of `[admin] tokens` (Bearer, or Basic with the token as password).

use super::AppState;
use super::error::HttpError;
use super::request::Params;
use crate::audit::export::{self, Filter};
use crate::audit::line::AuditRecord;
use crate::flows::binding::secrets_equal_bytes;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const PAGE_SIZE: usize = 50;

/// The presented credential: `Bearer <token>` or `Basic base64(any:token)`.
fn presented_secret(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_owned());
    }
    None
}

/// Whether the request carries one of `tokens`. SHA-256 digests compared in
/// constant time (`subtle`), every token compared: neither content nor
/// length leaks through timing.
pub fn is_admin(req: &HttpRequest, tokens: &[String]) -> bool {
    let Some(presented) = presented_secret(req).filter(|p| !p.is_empty()) else {
        return false;
    };
    let presented = digest::digest(&digest::SHA256, presented.as_bytes());
    let mut ok = false;
    for token in tokens {
        // Constant time (`subtle`), and no early exit: every token is compared.
        ok |= secrets_equal_bytes(
            presented.as_ref(),
            digest::digest(&digest::SHA256, token.as_bytes()).as_ref(),
        );
    }
    ok
}

struct Row {
    ts: String,
    event: String,
    site: String,
    partner: String,
    jti: String,
    session_fp: String,
    ip: String,
    reason: String,
    user_agent: String,
    request_id: String,
    highlight: bool,
}

#[derive(Default)]
struct FilterForm {
    event: String,
    site: String,
    partner: String,
    jti: String,
    session_fp: String,
    since: String,
    until: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    replays_hour: usize,
    replays_day: usize,
    forged_hour: usize,
    forged_day: usize,
    filter: FilterForm,
    rows: Vec<Row>,
    total: usize,
    page: usize,
    pages: usize,
    prev_link: String,
    next_link: String,
}

fn is_forgery(record: &AuditRecord) -> bool {
    record.event == "token.rejected"
        && matches!(
            record.reason.as_deref(),
            Some("token_bad_signature" | "token_bad_algorithm" | "token_unknown_key")
        )
}

fn count_since(
    records: &[AuditRecord],
    since: OffsetDateTime,
    wanted: impl Fn(&AuditRecord) -> bool,
) -> usize {
    records
        .iter()
        .filter(|r| wanted(r) && OffsetDateTime::parse(&r.ts, &Rfc3339).is_ok_and(|ts| ts >= since))
        .count()
}

/// The records of this node's audit file and its newest rotated file.
fn read_records(audit_file: Option<&std::path::Path>) -> Vec<AuditRecord> {
    let Some(path) = audit_file else {
        return Vec::new();
    };
    let rotated = std::path::PathBuf::from(format!("{}.1", path.display()));
    let mut text = std::fs::read_to_string(rotated).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    export::select(text.lines(), &Filter::default())
}

fn parse_time(text: &str, req: &HttpRequest) -> Result<Option<OffsetDateTime>, HttpError> {
    if text.is_empty() {
        return Ok(None);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(Some)
        .map_err(|_| {
            HttpError::bad_request("invalid_request", "since and until are RFC 3339 times", req)
        })
}

/// `GET /admin/audit`.
pub async fn audit(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    if !is_admin(&req, &state.admin_tokens) {
        let mut response = actix_web::ResponseError::error_response(&HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin credentials are required",
            &req,
        ));
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(
                "Basic realm=\"session-bridge admin\", charset=\"UTF-8\"",
            ),
        );
        return Ok(response);
    }
    let params = Params::query(&req)?;
    let text = |name: &str| params.get(name).unwrap_or("").trim().to_owned();
    let form = FilterForm {
        event: text("event"),
        site: text("site"),
        partner: text("partner"),
        jti: text("jti"),
        session_fp: text("session_fp"),
        since: text("since"),
        until: text("until"),
    };
    let some = |value: &String| (!value.is_empty()).then(|| value.clone());
    let filter = Filter {
        since: parse_time(&form.since, &req)?,
        until: parse_time(&form.until, &req)?,
        event: some(&form.event),
        site: some(&form.site),
        partner: some(&form.partner),
        jti: some(&form.jti),
        session_fp: some(&form.session_fp),
    };
    let page: usize = params
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    // File reading and parsing run on the blocking pool, not on a worker.
    let audit_file = state.audit_file.clone();
    let records = web::block(move || read_records(audit_file.as_deref()))
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "reading the audit trail failed",
                &req,
            )
        })?;
    let now = OffsetDateTime::now_utc();
    let hour = now - time::Duration::hours(1);
    let day = now - time::Duration::days(1);
    let replay = |r: &AuditRecord| r.event == "token.replayed";
    let mut matching: Vec<&AuditRecord> = records.iter().filter(|r| filter.matches(r)).collect();
    matching.reverse();
    let total = matching.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let rows = matching
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|r| Row {
            ts: r.ts.clone(),
            event: r.event.clone(),
            site: r.site.clone(),
            partner: opt(&r.partner),
            jti: opt(&r.jti),
            session_fp: opt(&r.session_fp),
            ip: opt(&r.ip),
            reason: opt(&r.reason),
            user_agent: opt(&r.user_agent),
            request_id: opt(&r.request_id),
            highlight: replay(r) || is_forgery(r),
        })
        .collect();
    let link = |page: usize| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("event", &form.event),
            ("site", &form.site),
            ("partner", &form.partner),
            ("jti", &form.jti),
            ("session_fp", &form.session_fp),
            ("since", &form.since),
            ("until", &form.until),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.append_pair("page", &page.to_string());
        format!("/admin/audit?{}", query.finish())
    };
    let html = AuditPage {
        replays_hour: count_since(&records, hour, replay),
        replays_day: count_since(&records, day, replay),
        forged_hour: count_since(&records, hour, is_forgery),
        forged_day: count_since(&records, day, is_forgery),
        rows,
        total,
        page,
        pages,
        prev_link: link(page.saturating_sub(1).max(1)),
        next_link: link(page + 1),
        filter: form,
    }
    .render()
    .map_err(|_| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "page rendering failed",
            &req,
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}
