//! Bulk import (spec §4): the file format, its header and its rows.

pub mod header;
pub mod reader;
pub mod row;
