//! The import's reading of a file (spec §4.1): the CSV reader fed in chunks
//! split anywhere, the header, and every row's parse. Beyond "never panics",
//! it checks what the import relies on: the records do not depend on where
//! the chunks split, lines only grow, and no cell holds a NUL (PostgreSQL
//! cannot store one; such a record fails alone).

#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::domain::import::{
    header::Header,
    reader::{CsvStream, FileRefusal, Limits, Record},
    row::{names_legacy_status_on_add, parse_row},
};

/// Small limits, so that the fuzzer reaches them and what follows them.
const LIMITS: Limits = Limits {
    max_field_bytes: 64,
    max_record_bytes: 512,
};

fn read(file: &[u8], chunk: usize) -> Result<Vec<Record>, FileRefusal> {
    let mut stream = CsvStream::new(LIMITS);
    let mut records = Vec::new();
    for piece in file.chunks(chunk.max(1)) {
        records.extend(stream.push(piece)?);
    }
    records.extend(stream.finish()?);
    Ok(records)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size.
    let Some((&first, file)) = data.split_first() else {
        return;
    };
    let whole = read(file, file.len());
    let split = read(file, usize::from(first % 17) + 1);
    assert_eq!(whole, split, "the records depend on where the chunks split");
    let Ok(records) = whole else {
        return;
    };
    let mut last_line = 0;
    let mut header: Option<Header> = None;
    for record in records {
        assert!(record.line > last_line, "lines must only grow");
        last_line = record.line;
        let Ok(cells) = record.fields else {
            continue;
        };
        assert!(
            cells.iter().all(|cell| !cell.contains('\0')),
            "a NUL reached a cell"
        );
        let Some(header) = &header else {
            header = Header::parse(&cells).ok();
            if header.is_none() {
                return;
            }
            continue;
        };
        for allow_legacy in [false, true] {
            if let Err(violations) = parse_row(header, &cells, allow_legacy) {
                assert!(!violations.is_empty(), "a refused row names why");
                assert!(violations.iter().all(|v| !v.field.is_empty()));
            }
        }
        let _ = names_legacy_status_on_add(header, &cells);
    }
});
