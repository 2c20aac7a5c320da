//! The macro that turns the command table in `cmd` into its parts: the
//! opcode constants, the `COMMANDS` rows, the `Command` enum, and decoding
//! and encoding, each field read and written where its row says.

/// One row per opcode:
///
/// ```text
/// NAME = opcode, len DWORDS, flags ALLOWED, privileged BOOL, addrs [GfxRef, ...]
///     => Variant { field: kind(where), ... };
/// ```
///
/// A field's kind is `gfx` (a 64-bit graphics address from dword `where`),
/// `dword` (the 32-bit dword `where`) or `flag` (header flag `where`).
macro_rules! command_table {
    ($(
        $(#[$doc:meta])*
        $op:ident = $code:literal, len $len:literal, flags $flags:expr,
            privileged $privileged:literal, addrs [$($addr:expr),* $(,)?]
            => $variant:ident $({ $($field:ident: $kind:ident($at:expr)),* $(,)? })?;
    )*) => {
        pub mod opcode {
            $(pub const $op: u8 = $code;)*
        }

        /// Every opcode, once.
        pub static COMMANDS: &[CmdInfo] = &[$(
            CmdInfo {
                opcode: opcode::$op,
                name: stringify!($op),
                len: $len,
                flags: $flags,
                privileged: $privileged,
                addrs: &[$($addr),*],
            },
        )*];

        /// A decoded command.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Command {$(
            $(#[$doc])*
            $variant $({ $($field: $crate::table::field_type!($kind)),* })?,
        )*}

        impl Command {
            pub fn opcode(&self) -> u8 {
                match self {
                    $(Command::$variant { .. } => opcode::$op,)*
                }
            }

            /// The command in `d`: exactly the dwords of a command with
            /// opcode `op`, whose header `decode` has checked.
            fn from_dwords(op: u8, d: &[u32]) -> Command {
                match op {
                    $(opcode::$op => Command::$variant $({
                        $($field: field::$kind::get(d, $at)),*
                    })?,)*
                    _ => unreachable!("decode looked the opcode up in the table"),
                }
            }

            /// The dwords of this command: what `decode` reads back.
            pub fn encode(&self) -> Vec<u32> {
                match *self {
                    $(Command::$variant $({ $($field),* })? => {
                        let mut d = vec![0u32; $len];
                        d[0] = header(opcode::$op, 0);
                        $($(field::$kind::put(&mut d, $at, $field);)*)?
                        d
                    })*
                }
            }
        }
    };
}

/// The Rust type of a field kind.
macro_rules! field_type {
    (gfx) => {
        u64
    };
    (dword) => {
        u32
    };
    (flag) => {
        bool
    };
}

pub(crate) use command_table;
pub(crate) use field_type;
