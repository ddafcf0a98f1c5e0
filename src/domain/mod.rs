//! Types and rules of the directory, independent of gRPC and of SQL.

pub mod access;
pub mod api_key;
pub mod attribute;
pub mod audit;
pub mod auth_cache;
pub mod authentication;
pub mod bootstrap;
pub mod call;
pub mod caller;
pub mod change_feed;
pub mod changes;
pub mod error;
pub mod group;
pub mod import;
pub mod name;
pub mod organization;
pub mod paging;
pub mod password;
pub mod request;
pub mod second_factor;
pub mod session;
pub mod sign_in;
pub mod status;
mod text_state;
pub mod token;
pub mod unit_of_work;
pub mod user;
pub mod values;

pub use error::{echo, DomainError, FieldViolation};
