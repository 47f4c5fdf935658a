// Type declarations for the session-bridge handshake script, both as the
// ES module `session-bridge.mjs` and as the classic script's global
// `window.SessionBridge`.

/** The public session view (DESIGN.md). `id` only for header delivery. */
export interface SessionView {
  id?: string;
  user_id: string | null;
  data: Record<string, unknown>;
  version: number;
  /** RFC 3339, UTC: when the session ends if idle. */
  expires_at: string;
  /** RFC 3339, UTC: when the session ends whatever happens. */
  absolute_expires_at: string;
}

/** `auto` tries iframe, then popup, then the redirect flow. */
export type ConnectMode = "auto" | "iframe" | "popup" | "redirect";

export interface ConnectOptions {
  /** The origin that holds the session, exactly: "https://id.example.com". */
  from: string;
  mode?: ConnectMode;
  /** How long the hidden iframe may take before the next step (default 2000). */
  timeoutMs?: number;
  /** Where the redirect flow comes back to (default: this page's path and query). */
  returnTo?: string;
}

/** Codes of the script itself; the exchange adds the bridge's token_* codes. */
export type SessionBridgeErrorCode =
  | "invalid_options"
  | "no_session"
  | "popup_blocked"
  | "popup_closed"
  | "timeout"
  | "redirect_failed"
  | "network_error"
  | "exchange_failed"
  | "token_malformed"
  | "token_bad_algorithm"
  | "token_unknown_key"
  | "token_bad_signature"
  | "token_expired"
  | "token_not_yet_valid"
  | "token_wrong_audience"
  | "token_unknown_issuer"
  | "token_issuer_mismatch"
  | "token_binding_mismatch"
  | "token_replayed"
  | "token_unknown"
  | "store_unavailable"
  | (string & {});

export interface SessionBridgeError extends Error {
  name: "SessionBridgeError";
  code: SessionBridgeErrorCode;
}

/**
 * Resolves to the session view for this site, taking the session from
 * `options.from` when this site has none yet. Call it from a click handler
 * when the popup step may be needed.
 */
export declare function connect(options: ConnectOptions): Promise<SessionView>;

declare const SessionBridge: { readonly connect: typeof connect };
export default SessionBridge;

declare global {
  interface Window {
    /** Set by the classic script `session-bridge.js`. */
    readonly SessionBridge: { readonly connect: typeof connect };
  }
}
