//! A small reader of Python's pickle protocol (0–5), limited to the opcodes `torch.save` emits:
//! it builds plain [`Value`]s and never runs code, so a weight file cannot execute anything.
//!
//! Calls (`REDUCE`, `NEWOBJ`) are kept as [`Value::Call`] for the caller to interpret, except
//! `collections.OrderedDict()`, which becomes a dict so `SETITEMS` can fill it. Persistent ids
//! (`BINPERSID`, how torch refers to tensor storages) are kept as [`Value::PersistentId`].

use std::fmt;

/// A pickled value. Containers are copied, not shared: the memo hands out clones, which is
/// enough for state dicts (no container is referenced again after it is filled).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Up to 128 bits (the legacy torch magic number needs 80).
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion order kept (an `OrderedDict` state dict's order).
    Dict(Vec<(Value, Value)>),
    /// `module.name` from `GLOBAL` / `STACK_GLOBAL`.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)`, with the `BUILD` state if one followed.
    Call {
        callable: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
    },
    PersistentId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i128::from(*b)),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn as_sequence(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(items) | Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// `module.name` when this is a global.
    pub fn global_name(&self) -> Option<String> {
        match self {
            Value::Global { module, name } => Some(format!("{module}.{name}")),
            _ => None,
        }
    }
}

/// Why a pickle could not be read; `offset` is the byte position in the pickle stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("the pickle ends early (at byte {0})")]
    Truncated(usize),
    #[error(
        "unsupported pickle opcode 0x{opcode:02x} at byte {offset} (not one torch.save writes)"
    )]
    UnsupportedOpcode { opcode: u8, offset: usize },
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
}

/// Reads one pickle starting at `data[0]`; returns the value and the bytes consumed (the
/// `STOP` included), so several pickles written one after another can be read in turn.
pub fn read_pickle(data: &[u8]) -> Result<(Value, usize), PickleError> {
    Machine::new(data).run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Value>,
}

impl fmt::Debug for Machine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle machine at byte {}", self.pos)
    }
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: std::collections::HashMap::new(),
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(PickleError::Truncated(self.data.len()))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.data.len()))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map(Value::Str)
            .map_err(|_| self.malformed("a string is not valid UTF-8"))
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("pop from an empty stack"))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let offset = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed {
            offset,
            reason: "empty stack".into(),
        })
    }

    /// The values pushed since the last `MARK`, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(self.malformed("MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&self, index: u32) -> Result<Value, PickleError> {
        self.memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo entry {index} was never stored")))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.malformed("memoize with an empty stack"))?;
        self.memo.insert(index, value);
        Ok(())
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let offset = self.pos;
        match self.top()? {
            Value::List(list) => {
                list.extend(items);
                Ok(())
            }
            other => Err(PickleError::Malformed {
                offset,
                reason: format!("APPEND to a non-list ({other:?})"),
            }),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of values"));
        }
        let offset = self.pos;
        match self.top()? {
            Value::Dict(entries) => {
                let mut items = items.into_iter();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some(entry) => entry.1 = value,
                        None => entries.push((key, value)),
                    }
                }
                Ok(())
            }
            other => Err(PickleError::Malformed {
                offset,
                reason: format!("SETITEM on a non-dict ({other:?})"),
            }),
        }
    }

    fn call(callable: Value, args: Value) -> Value {
        // An OrderedDict is filled by SETITEMS afterwards: it must be a dict now.
        if callable.global_name().as_deref() == Some("collections.OrderedDict") {
            return Value::Dict(Vec::new());
        }
        Value::Call {
            callable: Box::new(callable),
            args: Box::new(args),
            state: None,
        }
    }

    fn run(mut self) -> Result<(Value, usize), PickleError> {
        loop {
            let offset = self.pos;
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    // PROTO n
                    self.u8()?;
                }
                0x95 => {
                    // FRAME: an 8-byte length; the framed opcodes follow inline.
                    self.take(8)?;
                }
                b'.' => {
                    let value = self.pop()?;
                    return Ok((value, self.pos));
                }
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i128::from(v)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(i128::from(v)));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(i128::from(v)));
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes.
                    let n = if opcode == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        u32::from_le_bytes(self.le()?) as usize
                    };
                    if n > 16 {
                        return Err(self.malformed(format!("an integer of {n} bytes")));
                    }
                    let bytes = self.take(n)?;
                    let mut buffer = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xffu8; 16]
                    } else {
                        [0u8; 16]
                    };
                    buffer[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i128::from_le_bytes(buffer)));
                }
                b'I' => {
                    // INT as text (protocol 0); "01"/"00" are booleans.
                    let line = self.line()?;
                    let value = match line.as_str() {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        text => Value::Int(
                            text.parse()
                                .map_err(|_| self.malformed(format!("INT `{text}`")))?,
                        ),
                    };
                    self.stack.push(value);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let value = self.utf8(n)?;
                    self.stack.push(value);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let value = self.utf8(n)?;
                    self.stack.push(value);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?) as usize;
                    let value = self.utf8(n)?;
                    self.stack.push(value);
                }
                b'U' | b'T' | b'C' | b'B' | 0x8e => {
                    // SHORT_BINSTRING, BINSTRING, SHORT_BINBYTES, BINBYTES, BINBYTES8
                    let n = match opcode {
                        b'U' | b'C' => usize::from(self.u8()?),
                        b'T' | b'B' => u32::from_le_bytes(self.le()?) as usize,
                        _ => u64::from_le_bytes(self.le()?) as usize,
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.stack.push(if matches!(opcode, b'U' | b'T') {
                        Value::Str(String::from_utf8_lossy(&bytes).into_owned())
                    } else {
                        Value::Bytes(bytes)
                    });
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Vec::new()));
                    self.set_items(items)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(opcode - 0x84);
                    if self.stack.len() < n {
                        return Err(self.malformed("TUPLEn with too few values"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(top);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.stack.push(Value::Global { module, name })
                        }
                        _ => return Err(self.malformed("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: callable and argument tuple.
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(Self::call(callable, args));
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.top()? {
                        Value::Call { state: slot, .. } => *slot = Some(Box::new(state)),
                        // An OrderedDict's BUILD sets attributes (`_metadata`): not tensors.
                        Value::Dict(_) => {}
                        _ => return Err(self.malformed("BUILD on a value that is not an object")),
                    }
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.stack.push(Value::PersistentId(Box::new(id)));
                }
                b'q' => {
                    let index = u32::from(self.u8()?);
                    self.memo_put(index)?;
                }
                b'r' => {
                    let index = u32::from_le_bytes(self.le()?);
                    self.memo_put(index)?;
                }
                0x94 => {
                    let index = self.memo.len() as u32;
                    self.memo_put(index)?;
                }
                b'h' => {
                    let index = u32::from(self.u8()?);
                    let value = self.memo_get(index)?;
                    self.stack.push(value);
                }
                b'j' => {
                    let index = u32::from_le_bytes(self.le()?);
                    let value = self.memo_get(index)?;
                    self.stack.push(value);
                }
                _ => return Err(PickleError::UnsupportedOpcode { opcode, offset }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `OrderedDict` filled by `SETITEMS`, a float, a tuple and a memo read, by hand.
    #[test]
    fn reads_the_opcodes_torch_save_uses() {
        let mut data = vec![0x80, 2];
        data.extend(b"ccollections\nOrderedDict\nq\x00)R");
        data.extend(b"q\x01(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00b");
        data.push(b'G');
        data.extend(2.5f64.to_be_bytes());
        data.extend(b"N\x86X\x01\x00\x00\x00ch\x01u.");
        let (value, used) = read_pickle(&data).unwrap();
        assert_eq!(used, data.len());
        let Value::Dict(entries) = value else {
            panic!("{value:?}")
        };
        assert_eq!(entries[0], (Value::Str("a".into()), Value::Int(1)));
        assert_eq!(
            entries[1].1,
            Value::Tuple(vec![Value::Float(2.5), Value::None])
        );
        // The memo holds the dict as it was when stored (empty): copies, not references.
        assert_eq!(entries[2].1, Value::Dict(Vec::new()));
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn long_integers_are_twos_complement() {
        let (v, _) = read_pickle(&[0x80, 2, 0x8a, 2, 0x00, 0x80, b'.']).unwrap();
        assert_eq!(v, Value::Int(-32768));
        let magic = [
            0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
        ];
        let (v, _) = read_pickle(&magic).unwrap();
        assert_eq!(v, Value::Int(0x1950a86a20f9469cfc6c));
    }

    #[test]
    fn errors_name_the_offset() {
        assert_eq!(
            read_pickle(&[0x80, 2, 0xff]).unwrap_err(),
            PickleError::UnsupportedOpcode {
                opcode: 0xff,
                offset: 2
            }
        );
        assert_eq!(
            read_pickle(&[0x80, 2, b'X', 9, 0, 0, 0, b'a']).unwrap_err(),
            PickleError::Truncated(8)
        );
        assert!(matches!(
            read_pickle(&[0x80, 2, b'.']).unwrap_err(),
            PickleError::Malformed { offset: 3, .. }
        ));
    }
}
