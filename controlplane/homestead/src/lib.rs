//! Homestead: Whitewater's subscriber data service.

pub mod api;
pub mod auth;
pub mod client;
pub mod locks;
pub mod model;
pub mod provisioning;
pub mod service;
pub mod source;
pub mod store;
pub mod xml;

pub use client::HomesteadClient;
pub use service::{DemoSubscribers, Homestead, HomesteadConfig, StartError, StoreConfig};
