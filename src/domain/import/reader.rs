//! The import file, read as it streams in (spec §4.1 "Encoding and shape").
//!
//! Bytes arrive in chunks split anywhere. `CsvStream` turns them into
//! records, each with the 1-based physical line where it starts (counted here:
//! CRLF, LF and a lone CR each end a line, also inside quoted fields), decoded
//! on its own (UTF-8, else Windows-1252), and held to the field and record
//! limits without ever buffering past them.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

/// Bytes that Windows-1252 leaves undefined; decoders map them silently.
const UNDEFINED_IN_WINDOWS_1252: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// More fields than this in one record is treated as an over-long record.
const MAX_FIELDS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_field_bytes: usize,
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_field_bytes: 4 * 1024,
            max_record_bytes: 64 * 1024,
        }
    }
}

/// Why a whole file is refused before any row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRefusal {
    Utf16,
    Workbook,
    Empty,
}

impl FileRefusal {
    pub fn message(&self) -> &'static str {
        match self {
            Self::Utf16 => "the file is UTF-16; save it as \"CSV UTF-8\" (or \"CSV\") and send it again",
            Self::Workbook => {
                "the file is an Excel workbook (XLSX), not CSV; save it as \"CSV UTF-8\" (or \"CSV\") and send it again"
            }
            Self::Empty => "the file is empty",
        }
    }
}

/// Why one record cannot be used; parsing goes on with the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// 0-based index of the first field holding a byte undefined in Windows-1252.
    InvalidEncoding {
        index: usize,
    },
    /// 0-based index of the first field holding a NUL byte, which PostgreSQL
    /// cannot store in text (nor JSON): caught here so it fails only its row.
    NulCharacter {
        index: usize,
    },
    /// 0-based index of the first field over the limit.
    FieldTooLong {
        index: usize,
    },
    RecordTooLong,
    UnterminatedQuote,
}

impl RecordProblem {
    /// The 0-based index of the cell at fault, when one is.
    pub fn cell(&self) -> Option<usize> {
        match self {
            Self::InvalidEncoding { index }
            | Self::NulCharacter { index }
            | Self::FieldTooLong { index } => Some(*index),
            Self::RecordTooLong | Self::UnterminatedQuote => None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidEncoding { .. } => "INVALID_ENCODING",
            Self::NulCharacter { .. } => "NUL_CHARACTER",
            Self::FieldTooLong { .. } => "FIELD_TOO_LONG",
            Self::RecordTooLong => "RECORD_TOO_LONG",
            Self::UnterminatedQuote => "UNTERMINATED_QUOTE",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Self::InvalidEncoding { .. } => {
                "invalid text encoding: a byte that is neither UTF-8 nor Windows-1252"
            }
            Self::NulCharacter { .. } => {
                "contains a NUL character (byte 0), which cannot be stored"
            }
            Self::FieldTooLong { .. } => "the cell is longer than the limit per field",
            Self::RecordTooLong => "the record is longer than the limit per record",
            Self::UnterminatedQuote => "a quoted cell is never closed",
        }
    }
}

/// One non-blank record of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based physical line where the record starts.
    pub line: u64,
    pub fields: Result<Vec<String>, RecordProblem>,
}

/// Where the reader is: sniffing the start of the file, or reading records.
enum Phase {
    /// Bytes held until the file's kind and delimiter are known (bounded by the record limit).
    Sniffing(Vec<u8>),
    Reading(Box<Reader>),
}

pub struct CsvStream {
    limits: Limits,
    phase: Phase,
    /// Field bytes of the record in progress (at most the record limit).
    output: Vec<u8>,
    output_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// Physical lines completed so far.
    lines_done: u64,
    /// The last byte counted was a CR: an LF right after it ends no new line.
    after_cr: bool,
    /// Line where the record in progress starts, once its first byte is seen.
    record_line: Option<u64>,
    record_quotes: usize,
    record_too_long: bool,
    saw_anything: bool,
}

impl CsvStream {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            phase: Phase::Sniffing(Vec::new()),
            output: vec![0; limits.max_record_bytes],
            output_len: 0,
            ends: vec![0; MAX_FIELDS],
            ends_len: 0,
            lines_done: 0,
            after_cr: false,
            record_line: None,
            record_quotes: 0,
            record_too_long: false,
            saw_anything: false,
        }
    }

    /// Feeds the next chunk; returns the records it completed, in file order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Record>, FileRefusal> {
        let mut records = Vec::new();
        if let Phase::Sniffing(held) = &mut self.phase {
            held.extend_from_slice(chunk);
            let Some(delimiter) = sniff(held, self.limits.max_record_bytes, false)? else {
                return Ok(records);
            };
            let held = std::mem::take(held);
            self.start_reading(delimiter);
            self.read(&held, &mut records);
            return Ok(records);
        }
        self.read(chunk, &mut records);
        Ok(records)
    }

    /// The end of the file: returns the last records; refuses an empty file.
    pub fn finish(&mut self) -> Result<Vec<Record>, FileRefusal> {
        let mut records = Vec::new();
        if let Phase::Sniffing(held) = &mut self.phase {
            let held = std::mem::take(held);
            let delimiter = sniff(&held, self.limits.max_record_bytes, true)?.unwrap_or(b',');
            self.start_reading(delimiter);
            self.read(&held, &mut records);
        }
        self.read(&[], &mut records);
        if !self.saw_anything {
            return Err(FileRefusal::Empty);
        }
        Ok(records)
    }

    fn start_reading(&mut self, delimiter: u8) {
        self.phase = Phase::Reading(Box::new(ReaderBuilder::new().delimiter(delimiter).build()));
    }

    /// Runs the parser over `input` (empty means end of file).
    fn read(&mut self, mut input: &[u8], records: &mut Vec<Record>) {
        let at_end = input.is_empty();
        loop {
            let Phase::Reading(reader) = &mut self.phase else {
                return;
            };
            let (result, consumed, written, ended) = reader.read_record(
                input,
                &mut self.output[self.output_len..],
                &mut self.ends[self.ends_len..],
            );
            self.count_lines(&input[..consumed]);
            input = &input[consumed..];
            // csv-core reports field ends from the start of the record, across calls.
            self.output_len += written;
            self.ends_len += ended;
            match result {
                ReadRecordResult::InputEmpty => {
                    if input.is_empty() && !at_end {
                        return;
                    }
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {
                    // Over the record limit: keep parsing to find its end, keep none of it.
                    self.record_too_long = true;
                    self.output_len = 0;
                    self.ends_len = 0;
                }
                ReadRecordResult::Record => self.complete_record(records),
                ReadRecordResult::End => return,
            }
        }
    }

    /// Counts line breaks, notes where a record starts, and counts its quotes.
    fn count_lines(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match byte {
                b'\r' => {
                    self.lines_done += 1;
                    self.after_cr = true;
                    continue;
                }
                b'\n' => {
                    if !self.after_cr {
                        self.lines_done += 1;
                    }
                    self.after_cr = false;
                    continue;
                }
                b'"' => self.record_quotes += 1,
                _ => {}
            }
            self.after_cr = false;
            if self.record_line.is_none() {
                self.record_line = Some(self.lines_done + 1);
            }
        }
    }

    fn complete_record(&mut self, records: &mut Vec<Record>) {
        let line = self.record_line.take().unwrap_or(self.lines_done);
        let fields = if self.record_quotes % 2 == 1 {
            Err(RecordProblem::UnterminatedQuote)
        } else if self.record_too_long {
            Err(RecordProblem::RecordTooLong)
        } else {
            self.decode_fields()
        };
        self.output_len = 0;
        self.ends_len = 0;
        self.record_quotes = 0;
        self.record_too_long = false;
        let blank = matches!(&fields, Ok(values) if values.iter().all(|v| v.trim().is_empty()));
        if !blank {
            self.saw_anything = true;
            records.push(Record { line, fields });
        }
    }

    fn decode_fields(&self) -> Result<Vec<String>, RecordProblem> {
        let bytes = &self.output[..self.output_len];
        let mut start = 0;
        let mut spans = Vec::with_capacity(self.ends_len);
        for (index, &end) in self.ends[..self.ends_len].iter().enumerate() {
            if end - start > self.limits.max_field_bytes {
                return Err(RecordProblem::FieldTooLong { index });
            }
            if bytes[start..end].contains(&0) {
                return Err(RecordProblem::NulCharacter { index });
            }
            spans.push(start..end);
            start = end;
        }
        // Valid UTF-8 only if every cell is: a character split by a delimiter
        // (`S\xC3,\xA1`) is valid across cells but not in either (found by fuzzing).
        if let Ok(text) = std::str::from_utf8(bytes) {
            if spans.iter().all(|span| text.is_char_boundary(span.start)) {
                return Ok(spans
                    .into_iter()
                    .map(|span| text[span].to_owned())
                    .collect());
            }
        }
        if let Some(index) = spans.iter().position(|span| {
            bytes[span.clone()]
                .iter()
                .any(|b| UNDEFINED_IN_WINDOWS_1252.contains(b))
        }) {
            return Err(RecordProblem::InvalidEncoding { index });
        }
        Ok(spans
            .into_iter()
            .map(|span| {
                encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(&bytes[span])
                    .0
                    .into_owned()
            })
            .collect())
    }
}

/// Looks at the start of the file: refuses UTF-16 and workbooks, and picks
/// the delimiter from the header line (`,` or `;`, whichever appears more
/// outside quotes). `None` while more bytes are needed.
fn sniff(held: &[u8], limit: usize, at_end: bool) -> Result<Option<u8>, FileRefusal> {
    if held.starts_with(&[0xFF, 0xFE]) || held.starts_with(&[0xFE, 0xFF]) {
        return Err(FileRefusal::Utf16);
    }
    if held.starts_with(b"PK\x03\x04") {
        return Err(FileRefusal::Workbook);
    }
    if held.len() < 4 && !at_end {
        return Ok(None);
    }
    // Only the first `limit` bytes decide, however many arrived at once: the
    // choice must not depend on where the chunks split (found by fuzzing).
    let window = &held[..held.len().min(limit)];
    let body = window.strip_prefix(UTF8_BOM).unwrap_or(window);
    let pick = |commas: usize, semicolons: usize| if semicolons > commas { b';' } else { b',' };
    let (mut in_quotes, mut has_text) = (false, false);
    let (mut commas, mut semicolons) = (0, 0);
    // Delimiters on blank lines before the header, should no header come.
    let (mut blank_commas, mut blank_semicolons) = (0, 0);
    for &byte in body {
        match byte {
            b'"' => {
                in_quotes = !in_quotes;
                has_text = true;
            }
            b',' if !in_quotes => commas += 1,
            b';' if !in_quotes => semicolons += 1,
            b'\r' | b'\n' if !in_quotes => {
                // The first line with text is the header; blank lines before it decide nothing.
                if has_text {
                    return Ok(Some(pick(commas, semicolons)));
                }
                blank_commas += commas;
                blank_semicolons += semicolons;
                (commas, semicolons) = (0, 0);
            }
            other if !other.is_ascii_whitespace() => has_text = true,
            _ => {}
        }
    }
    if at_end || held.len() >= limit {
        Ok(Some(if has_text {
            pick(commas, semicolons)
        } else {
            pick(blank_commas + commas, blank_semicolons + semicolons)
        }))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a whole file fed in chunks of `size` bytes.
    fn read_in_chunks(file: &[u8], size: usize) -> Result<Vec<Record>, FileRefusal> {
        let mut stream = CsvStream::new(Limits::default());
        let mut records = Vec::new();
        for chunk in file.chunks(size.max(1)) {
            records.extend(stream.push(chunk)?);
        }
        records.extend(stream.finish()?);
        Ok(records)
    }

    fn read_every_way(file: &[u8]) -> Vec<Record> {
        let whole = read_in_chunks(file, file.len().max(1)).unwrap();
        for size in [1, 2, 3, 5, 7, 64] {
            assert_eq!(
                read_in_chunks(file, size).unwrap(),
                whole,
                "chunks of {size}"
            );
        }
        whole
    }

    fn ok(line: u64, fields: &[&str]) -> Record {
        Record {
            line,
            fields: Ok(fields.iter().map(|f| (*f).to_owned()).collect()),
        }
    }

    #[test]
    fn lines_are_counted_for_crlf_lf_and_lone_cr_including_quoted_newlines() {
        let file = b"email,first_name\r\na@x.com,\"Ana\r\nMaria\"\r\n\r\nb@x.com,Bia\rc@x.com,\"C\nC\"\nd@x.com,Dora";
        assert_eq!(
            read_every_way(file),
            [
                ok(1, &["email", "first_name"]),
                ok(2, &["a@x.com", "Ana\r\nMaria"]),
                ok(5, &["b@x.com", "Bia"]),
                ok(6, &["c@x.com", "C\nC"]),
                ok(8, &["d@x.com", "Dora"]),
            ]
        );
    }

    #[test]
    fn semicolons_windows_1252_and_bom_as_excel_writes_them() {
        let mut file = b"\xEF\xBB\xBFemail;first_name\r\n".to_vec();
        file.extend_from_slice(b"jose@x.com;Jos\xE9\r\n"); // cp1252 "José"
        file.extend_from_slice("ana@x.com;Ana Conceição\r\n".as_bytes()); // UTF-8
        file.extend_from_slice(b"bad@x.com;Bad\x81\r\n");
        assert_eq!(
            read_every_way(&file),
            [
                ok(1, &["email", "first_name"]),
                ok(2, &["jose@x.com", "José"]),
                ok(3, &["ana@x.com", "Ana Conceição"]),
                Record {
                    line: 4,
                    fields: Err(RecordProblem::InvalidEncoding { index: 1 })
                },
            ]
        );
    }

    #[test]
    fn blank_lines_of_whitespace_or_delimiters_are_skipped() {
        let file = b"\r\nemail,first_name\n  \n,,\n\"\",\na@x.com,A\n";
        assert_eq!(
            read_every_way(file),
            [ok(2, &["email", "first_name"]), ok(6, &["a@x.com", "A"])]
        );
    }

    #[test]
    fn over_long_fields_and_records_fail_alone_and_reading_goes_on() {
        let mut file = b"email,first_name\n".to_vec();
        file.extend_from_slice(format!("a@x.com,{}\n", "x".repeat(5000)).as_bytes());
        file.extend_from_slice(format!("b@x.com,{}\n", "y,".repeat(40_000)).as_bytes());
        file.extend_from_slice(b"c@x.com,C\n");
        let records = read_in_chunks(&file, 1000).unwrap();
        assert_eq!(
            records[1],
            Record {
                line: 2,
                fields: Err(RecordProblem::FieldTooLong { index: 1 })
            }
        );
        assert_eq!(
            records[2],
            Record {
                line: 3,
                fields: Err(RecordProblem::RecordTooLong)
            }
        );
        assert_eq!(records[3], ok(4, &["c@x.com", "C"]));
    }

    #[test]
    fn an_unterminated_quote_fails_its_record() {
        let records = read_every_way(b"email,first_name\na@x.com,\"Ana\nb@x.com,B\n");
        assert_eq!(
            records[1],
            Record {
                line: 2,
                fields: Err(RecordProblem::UnterminatedQuote)
            }
        );
    }

    #[test]
    fn utf16_workbooks_and_empty_files_are_refused() {
        assert_eq!(
            read_in_chunks(b"\xFF\xFEe\0m\0", 1),
            Err(FileRefusal::Utf16)
        );
        assert_eq!(
            read_in_chunks(b"PK\x03\x04rest", 2),
            Err(FileRefusal::Workbook)
        );
        assert_eq!(read_in_chunks(b"", 1), Err(FileRefusal::Empty));
        assert_eq!(read_in_chunks(b"  \r\n ;; \n", 3), Err(FileRefusal::Empty));
    }

    #[test]
    fn a_nul_byte_fails_its_record_naming_the_cell_and_reading_goes_on() {
        let records = read_every_way(b"email,first_name\na@x.com,A\0na\nb@x.com,B\n");
        assert_eq!(
            records[1],
            Record {
                line: 2,
                fields: Err(RecordProblem::NulCharacter { index: 1 })
            }
        );
        assert_eq!(records[2], ok(3, &["b@x.com", "B"]));
    }

    #[test]
    fn a_header_line_longer_than_the_record_limit_gets_the_same_delimiter_in_any_chunking() {
        // `;` leads in the first 64 KiB of the header line, `,` in the whole line.
        let mut file = b"email".to_vec();
        file.extend_from_slice(&b";x".repeat(40_000));
        file.extend_from_slice(&b",y".repeat(100_000));
        file.extend_from_slice(b"\na,b;c\n");
        let whole = read_in_chunks(&file, file.len()).unwrap();
        assert_eq!(whole[1], ok(2, &["a,b", "c"]));
        for size in [1000, 4096, 65_536] {
            assert_eq!(
                read_in_chunks(&file, size).unwrap(),
                whole,
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_character_split_by_a_delimiter_makes_the_record_windows_1252() {
        let records = read_every_way(b"email,first_name,last_name\na@x.com,S\xC3,\xA1\n");
        assert_eq!(records[1], ok(2, &["a@x.com", "S\u{C3}", "\u{A1}"]));
    }

    #[test]
    fn splits_inside_multibyte_characters_decode_the_same() {
        let file = "email,first_name\nzoe@x.com,Zoë 김\n".as_bytes();
        assert_eq!(read_every_way(file)[1], ok(2, &["zoe@x.com", "Zoë 김"]));
    }
}
