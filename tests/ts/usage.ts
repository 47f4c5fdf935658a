// Compiled with `tsc --noEmit` by scripts/test.sh: the declarations must
// accept correct use and reject wrong use.
import SessionBridge, { connect, type ConnectOptions, type SessionBridgeError, type SessionView } from "../../static/session-bridge";

async function asModule(): Promise<string | null> {
  const view: SessionView = await connect({ from: "https://id.example.com" });
  const cart = view.data["cart"];
  return Array.isArray(cart) ? view.user_id : null;
}

async function asGlobal(): Promise<number> {
  const options: ConnectOptions = { from: "https://id.example.com", mode: "popup", timeoutMs: 1500, returnTo: "/cart" };
  try {
    const view = await window.SessionBridge.connect(options);
    return view.version;
  } catch (e) {
    const error = e as SessionBridgeError;
    if (error.code === "popup_blocked" || error.code === "token_replayed") {
      return -1;
    }
    return -2;
  }
}

async function defaultExport(): Promise<string> {
  const view = await SessionBridge.connect({ from: "https://id.example.com", mode: "iframe" });
  return view.expires_at;
}

// @ts-expect-error: `from` is required
connect({});
// @ts-expect-error: not a mode
connect({ from: "https://id.example.com", mode: "frame" });
// @ts-expect-error: timeoutMs is a number
connect({ from: "https://id.example.com", timeoutMs: "2s" });

export { asModule, asGlobal, defaultExport };
