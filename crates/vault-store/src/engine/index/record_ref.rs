//! Where a record the index knows of sits in the log, and what must be found there.

use vault_format::log::FRAME_FIXED_LEN;
use vault_format::{RecordEnvelope, RecordKind};

use crate::backend::RecordAt;

/// A live record, by place: read back (and checked against its sequence number and kind) when
/// its contents are needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordRef {
    pub(crate) sequence: u64,
    pub(crate) kind: RecordKind,
    pub(crate) at: RecordAt,
}

impl RecordRef {
    /// The record's encoded length.
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.at.len)
    }

    /// The places of `records`, encoded in that order into a frame body of `body_len` bytes
    /// that ends at `frame_end`.
    pub(crate) fn in_frame<'a>(
        records: impl IntoIterator<Item = &'a RecordEnvelope>,
        body_len: usize,
        frame_end: u64,
    ) -> Vec<RecordRef> {
        let mut start = FRAME_FIXED_LEN;
        records
            .into_iter()
            .map(|env| {
                let len = env.encoded_len();
                let r = RecordRef {
                    sequence: env.sequence,
                    kind: env.kind,
                    at: RecordAt {
                        frame_end,
                        // A frame body is at most MAX_FRAME_LEN (256 MiB) long.
                        back: body_len.saturating_sub(start) as u32,
                        len: len as u32,
                    },
                };
                start += len;
                r
            })
            .collect()
    }
}
