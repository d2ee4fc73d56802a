//! Just enough of MATLAB's level-5 MAT-file format to read the ImageNet devkit's `meta.mat`: the
//! struct array `synsets`, whose `ILSVRC2012_ID` and `WNID` fields map the ground-truth file's
//! class ids to wnids. Numeric, character and struct arrays, compressed (`miCOMPRESSED`, zlib) or
//! not, little- or big-endian; anything else is skipped or named in the error.

use std::io::Read;

/// A MAT-file value: what `meta.mat` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any numeric class, widened to f64, in column-major order.
    Numbers(Vec<f64>),
    Text(String),
    /// A struct array: its field names and, per element (column-major), one value per field.
    Structs {
        fields: Vec<String>,
        elements: Vec<Vec<Value>>,
    },
    /// A class this reader does not decode (cell arrays, sparse, objects).
    Other,
}

/// A top-level variable of a MAT-file.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub value: Value,
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;
const MX_SPARSE: u8 = 5;
/// Numeric classes: double, single, int8 to uint64.
const MX_NUMERIC: std::ops::RangeInclusive<u8> = 6..=15;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn u32_at(&self, at: usize) -> Result<u32, String> {
        let b: [u8; 4] = self
            .bytes
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("truncated at byte {at}"))?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// The next data element: its type and its bytes (small elements included).
    fn element(&mut self) -> Result<(u32, &'a [u8]), String> {
        let first = self.u32_at(self.at)?;
        // Small data element: the size in the upper half of the tag, the data in its second word.
        let small_size = first >> 16;
        if small_size != 0 {
            let kind = first & 0xffff;
            let start = self.at + 4;
            let data = self
                .bytes
                .get(start..start + small_size as usize)
                .ok_or("truncated small element")?;
            self.at += 8;
            return Ok((kind, data));
        }
        let size = self.u32_at(self.at + 4)? as usize;
        let start = self.at + 8;
        let data = self
            .bytes
            .get(start..start + size)
            .ok_or_else(|| format!("element of {size} bytes at byte {} is truncated", self.at))?;
        // Elements start on 8-byte boundaries; a compressed one is followed directly by the next.
        let kind = first;
        self.at = if kind == MI_COMPRESSED {
            start + size
        } else {
            start + size.div_ceil(8) * 8
        };
        Ok((kind, data))
    }

    fn numbers(&self, kind: u32, data: &[u8]) -> Result<Vec<f64>, String> {
        let width = match kind {
            MI_INT8 | MI_UINT8 | MI_UTF8 => 1,
            MI_INT16 | MI_UINT16 => 2,
            MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
            MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
            other => return Err(format!("data type {other} is not numeric")),
        };
        Ok(data
            .chunks_exact(width)
            .map(|c| {
                let mut b = [0u8; 8];
                if self.big_endian {
                    b[8 - width..].copy_from_slice(c);
                    b.reverse();
                } else {
                    b[..width].copy_from_slice(c);
                }
                let bits = u64::from_le_bytes(b);
                match kind {
                    MI_INT8 => bits as u8 as i8 as f64,
                    MI_INT16 => bits as u16 as i16 as f64,
                    MI_INT32 => bits as u32 as i32 as f64,
                    MI_INT64 => bits as i64 as f64,
                    MI_SINGLE => f32::from_bits(bits as u32) as f64,
                    MI_DOUBLE => f64::from_bits(bits),
                    _ => bits as f64,
                }
            })
            .collect())
    }

    /// A matrix element's contents (after its tag).
    fn matrix(&self, data: &'a [u8]) -> Result<(String, Value), String> {
        let mut r = Reader {
            bytes: data,
            at: 0,
            big_endian: self.big_endian,
        };
        if data.is_empty() {
            return Ok((String::new(), Value::Other));
        }
        let (_, flags) = r.element()?;
        let class = if flags.len() >= 4 {
            let word = if self.big_endian {
                u32::from_be_bytes(flags[..4].try_into().expect("four bytes"))
            } else {
                u32::from_le_bytes(flags[..4].try_into().expect("four bytes"))
            };
            (word & 0xff) as u8
        } else {
            return Err("array flags are truncated".into());
        };
        let (kind, dims) = r.element()?;
        let dims = self.numbers(kind, dims)?;
        let count = dims.iter().product::<f64>() as usize;
        let (_, name) = r.element()?;
        let name = String::from_utf8_lossy(name).into_owned();
        let value = match class {
            MX_CHAR => {
                let (kind, chars) = r.element()?;
                let text = match kind {
                    MI_UTF8 | MI_UINT8 | MI_INT8 => String::from_utf8_lossy(chars).into_owned(),
                    _ => self
                        .numbers(kind, chars)?
                        .into_iter()
                        .map(|c| char::from_u32(c as u32).unwrap_or('\u{fffd}'))
                        .collect(),
                };
                // A multi-row char array is stored column by column; meta.mat's are one row.
                Value::Text(text)
            }
            MX_STRUCT => {
                let (kind, length) = r.element()?;
                let length = *self
                    .numbers(kind, length)?
                    .first()
                    .ok_or("field name length missing")? as usize;
                let (_, names) = r.element()?;
                let fields: Vec<String> = names
                    .chunks(length.max(1))
                    .map(|n| {
                        String::from_utf8_lossy(n)
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .collect();
                let mut elements = Vec::with_capacity(count);
                for _ in 0..count {
                    let mut values = Vec::with_capacity(fields.len());
                    for _ in &fields {
                        let (kind, data) = r.element()?;
                        if kind != MI_MATRIX {
                            return Err(format!("a struct field holds data type {kind}"));
                        }
                        values.push(self.matrix(data)?.1);
                    }
                    elements.push(values);
                }
                Value::Structs { fields, elements }
            }
            c if MX_NUMERIC.contains(&c) => {
                let (kind, real) = r.element()?;
                Value::Numbers(self.numbers(kind, real)?)
            }
            MX_SPARSE => Value::Other,
            _ => Value::Other,
        };
        Ok((name, value))
    }
}

/// The top-level variables of a level-5 MAT-file's bytes.
pub fn read(bytes: &[u8]) -> Result<Vec<Variable>, String> {
    if bytes.len() < 128 {
        return Err("shorter than a MAT-file's 128-byte header".into());
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => {
            return Err(
                "not a level-5 MAT-file (no endian indicator; version 7.3 files are HDF5)".into(),
            );
        }
    };
    let mut r = Reader {
        bytes: &bytes[128..],
        at: 0,
        big_endian,
    };
    let mut variables = Vec::new();
    while !r.done() {
        let (kind, data) = r.element()?;
        let (name, value) = match kind {
            MI_MATRIX => r.matrix(data)?,
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(data)
                    .read_to_end(&mut inflated)
                    .map_err(|e| format!("a compressed variable does not inflate: {e}"))?;
                let mut inner = Reader {
                    bytes: &inflated,
                    at: 0,
                    big_endian,
                };
                let (kind, data) = inner.element()?;
                if kind != MI_MATRIX {
                    continue;
                }
                inner.matrix(data)?
            }
            _ => continue,
        };
        variables.push(Variable { name, value });
    }
    Ok(variables)
}

/// The devkit's class ids and wnids: `synsets(i).ILSVRC2012_ID` -> `synsets(i).WNID` for every
/// synset of `meta.mat` (the 1,000 leaves have ids 1 to 1000).
pub fn devkit_wnids(bytes: &[u8]) -> Result<Vec<(u32, String)>, String> {
    let variables = read(bytes)?;
    let synsets = variables
        .into_iter()
        .find(|v| v.name == "synsets")
        .ok_or("no variable `synsets`")?;
    let Value::Structs { fields, elements } = synsets.value else {
        return Err("`synsets` is not a struct array".into());
    };
    let field = |name: &str| {
        fields
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| format!("`synsets` has no field `{name}` (fields: {fields:?})"))
    };
    let (id, wnid) = (field("ILSVRC2012_ID")?, field("WNID")?);
    elements
        .iter()
        .map(|e| match (&e[id], &e[wnid]) {
            (Value::Numbers(n), Value::Text(w)) if n.len() == 1 => Ok((n[0] as u32, w.clone())),
            other => Err(format!("a synset's id and wnid are {other:?}")),
        })
        .collect()
}
