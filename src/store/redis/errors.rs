//! Redis replies and errors as the store reports them: fixed, short
//! reasons that never quote the server or the URL.

use crate::store::StoreError;
use redis::{RedisError, Value};

/// A PING reply.
pub(super) fn pong(reply: Value) -> Result<(), StoreError> {
    match reply {
        Value::SimpleString(s) if s == "PONG" => Ok(()),
        Value::BulkString(b) if b == b"PONG" => Ok(()),
        Value::Okay => Ok(()),
        _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
    }
}

/// The kind of `err`, looking through an aborted transaction: Redis refuses
/// a command while queueing it (`READONLY` on a demoted master, `LOADING`,
/// `MASTERDOWN`) and then answers the `EXEC` with `EXECABORT`; the first
/// refusal says what went wrong.
pub(super) fn kind_of(err: &RedisError) -> redis::ErrorKind {
    let kind = err.kind();
    if kind != redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort) {
        return kind;
    }
    err.clone()
        .into_server_errors()
        .and_then(|errors| errors.iter().find_map(|(_, error)| error.kind()))
        .map_or(kind, redis::ErrorKind::Server)
}

/// A Redis error as a short, fixed reason: never the server's text (it may
/// quote a key) and never the URL.
pub(super) fn unavailable(err: &RedisError) -> StoreError {
    let why = if err.is_timeout() {
        "redis timed out"
    } else if err.is_connection_refusal() {
        "redis refused the connection"
    } else if err.is_connection_dropped() {
        "redis connection lost"
    } else if err.is_io_error() {
        "redis i/o error"
    } else {
        match kind_of(err) {
            redis::ErrorKind::AuthenticationFailed => "redis authentication failed",
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading) => "redis is loading",
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => "redis is read-only",
            redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown) => "redis master down",
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown) => "redis cluster down",
            redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain) => {
                "redis asked to try again"
            }
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => "redis denied permission",
            redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => "redis command failed",
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
                "redis reply unreadable"
            }
            redis::ErrorKind::MasterNameNotFoundBySentinel => "redis sentinel knows no master",
            redis::ErrorKind::EmptySentinelList => "redis sentinel list empty",
            redis::ErrorKind::ClusterConnectionNotFound => "redis cluster node unreachable",
            _ => "redis error",
        }
    };
    StoreError::Unavailable(why.to_owned())
}
