//! Enums whose values are bytes on disk, declared once each: the variant and its byte side by
//! side, with the table of every value and the byte conversions generated from that one list (as
//! rustls's `enum_builder!` does), so no value is ever numbered twice.

/// Declares a `#[repr(u8)]` enum of wire values with `ALL`, `to_byte` and `from_byte`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            const COUNT: usize = [$($value),+].len();

            /// Every value, in numbering order.
            pub const ALL: [$name; Self::COUNT] = [$($name::$variant),+];

            /// The byte on disk.
            pub const fn to_byte(self) -> u8 {
                self as u8
            }

            /// The value for a byte read from disk, if it is one.
            pub fn from_byte(b: u8) -> Option<Self> {
                match b {
                    $( $value => Some($name::$variant), )+
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use wire_enum;
