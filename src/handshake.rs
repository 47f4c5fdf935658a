//! The handshake script partners embed: one source, shipped as a classic
//! script and as an ES module, with its Subresource Integrity hashes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;

/// `session-bridge.js`: defines `window.SessionBridge.connect`.
pub const CLASSIC: &str = concat!(
    "(function () {\n\"use strict\";\n",
    include_str!("../static/session-bridge.core.js"),
    "window.SessionBridge = Object.freeze({ connect: connect });\n})();\n"
);

/// `session-bridge.mjs`: `import { connect } from ".../session-bridge.mjs"`.
pub const MODULE: &str = concat!(
    include_str!("../static/session-bridge.core.js"),
    "export { connect };\nexport default Object.freeze({ connect: connect });\n"
);

/// The `integrity` attribute value for `source` (SHA-384, RFC SRI).
pub fn sri(source: &str) -> String {
    let hash = digest::digest(&digest::SHA384, source.as_bytes());
    format!("sha384-{}", STANDARD.encode(hash.as_ref()))
}
