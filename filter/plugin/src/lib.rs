//! The filter's plugin logic that does not depend on the host: compiling the
//! plugin configuration into a routing [`Table`], routing one request with the
//! engine and applying the decision, and the response headers remembered for
//! the response phase. Two host adapters run it: the proxy-wasm filter
//! (`filter/src`) and the Envoy dynamic module (`filter/native`); each gives it
//! the host calls through the small [`Host`] trait, so both builds behave alike.

mod request;
mod table;

pub use request::{
    refuse, refuse_unconfigured, respond, route_request, Host, Outcome, ResponseHeaders,
};
pub use table::{parse_config, Table};
