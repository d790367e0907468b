//! The churn scenario: subscribers that come and go while publishers
//! publish with acks, every delivery accounted for (`crate::ledger`).

pub mod publisher;
pub mod subscriber;
