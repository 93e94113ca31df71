//! Refusing floats that JSON cannot carry. serde_json writes `NaN` and the infinities as `null`,
//! which no receiver reads back as a number; [`Finite`] serializes a value through a thin
//! wrapper around the real serializer that turns them into an error instead, in the same pass.
//! [`path_of_error`] serializes again with the wrapper noting where it is, to name the value
//! at fault: that bookkeeping is only done on the error path.

use std::cell::Cell;

use serde::ser::{
    Error as _, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// A value that serializes as itself, failing on a non-finite float anywhere inside it.
pub(super) struct Finite<'a, T: ?Sized> {
    value: &'a T,
    at: Option<&'a At<'a>>,
}

impl<'a, T: ?Sized> Finite<'a, T> {
    pub(super) fn new(value: &'a T) -> Self {
        Finite { value, at: None }
    }
}

impl<T: Serialize + ?Sized> Serialize for Finite<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Checked::new(serializer, self.at))
    }
}

/// Where a value is inside the data, when tracked.
pub(super) struct At<'a> {
    parent: Option<&'a At<'a>>,
    segment: Segment<'a>,
}

enum Segment<'a> {
    /// The top; holds the path of the first value that failed.
    Root(&'a Cell<Option<String>>),
    Field(&'static str),
    Key(String),
    Index(usize),
}

impl At<'_> {
    /// Notes this place as the one that failed, unless a deeper one already did.
    fn fail(&self) {
        let mut segments = Vec::new();
        let mut at = self;
        loop {
            match &at.segment {
                Segment::Root(failed) => {
                    let deeper = failed.take();
                    failed.set(deeper.or_else(|| Some(path(&segments))));
                    return;
                }
                segment => segments.push(segment),
            }
            match at.parent {
                Some(parent) => at = parent,
                None => return,
            }
        }
    }
}

fn path(segments: &[&Segment<'_>]) -> String {
    let mut path = String::from("data");
    for segment in segments.iter().rev() {
        match segment {
            Segment::Field(name) => {
                path.push('.');
                path.push_str(name);
            }
            Segment::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
            Segment::Root(_) => {}
        }
    }
    path
}

/// Serializes `data` into nothing, noting where it fails: `data.items[1].price`, or `None` when
/// it does not fail, or fails at the top.
pub(super) fn path_of_error<D: Serialize + ?Sized>(data: &D) -> Option<String> {
    let failed = Cell::new(None);
    let root = At {
        parent: None,
        segment: Segment::Root(&failed),
    };
    let mut json = serde_json::Serializer::new(std::io::sink());
    let _ = data.serialize(Checked::new(&mut json, Some(&root)));
    failed.take()
}

/// The serializer (or compound serializer) `S`, checking every float that passes through.
pub(super) struct Checked<'a, S> {
    inner: S,
    at: Option<&'a At<'a>>,
    /// The next element's index, in sequences.
    index: usize,
    /// The current entry's key, in maps, when tracked.
    key: Option<String>,
}

impl<'a, S> Checked<'a, S> {
    pub(super) fn new(inner: S, at: Option<&'a At<'a>>) -> Self {
        Checked {
            inner,
            at,
            index: 0,
            key: None,
        }
    }
}

/// Serializes a nested value with `write`, tracked at `segment` below `at` when tracking.
fn nested<R, E>(
    at: Option<&At<'_>>,
    segment: impl FnOnce() -> Segment<'static>,
    write: impl FnOnce(Option<&At<'_>>) -> Result<R, E>,
) -> Result<R, E> {
    match at {
        None => write(None),
        Some(parent) => {
            let at = At {
                parent: Some(parent),
                segment: segment(),
            };
            write(Some(&at)).inspect_err(|_| at.fail())
        }
    }
}

fn float<S: Serializer>(
    s: S,
    value: f64,
    write: impl FnOnce(S) -> Result<S::Ok, S::Error>,
) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        write(s)
    } else {
        Err(S::Error::custom(format_args!(
            "`{value}` is not a JSON number (serde_json would write it as null)"
        )))
    }
}

/// Forwards the methods that take no nested value.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.inner.$method($($arg),*)
        })*
    };
}

impl<'a, S: Serializer> Serializer for Checked<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Checked<'a, S::SerializeSeq>;
    type SerializeTuple = Checked<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Checked<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Checked<'a, S::SerializeTupleVariant>;
    type SerializeMap = Checked<'a, S::SerializeMap>;
    type SerializeStruct = Checked<'a, S::SerializeStruct>;
    type SerializeStructVariant = Checked<'a, S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        float(self.inner, f64::from(v), |s| s.serialize_f32(v))
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        float(self.inner, v, |s| s.serialize_f64(v))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_some(&Finite { value, at: self.at })
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_struct(name, &Finite { value, at: self.at })
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner
            .serialize_newtype_variant(name, index, variant, &Finite { value, at: self.at })
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let inner = self.inner.serialize_seq(len)?;
        Ok(Checked::new(inner, self.at))
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let inner = self.inner.serialize_tuple(len)?;
        Ok(Checked::new(inner, self.at))
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let inner = self.inner.serialize_tuple_struct(name, len)?;
        Ok(Checked::new(inner, self.at))
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let inner = self
            .inner
            .serialize_tuple_variant(name, index, variant, len)?;
        Ok(Checked::new(inner, self.at))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let inner = self.inner.serialize_map(len)?;
        Ok(Checked::new(inner, self.at))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let inner = self.inner.serialize_struct(name, len)?;
        Ok(Checked::new(inner, self.at))
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let inner = self
            .inner
            .serialize_struct_variant(name, index, variant, len)?;
        Ok(Checked::new(inner, self.at))
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Implements a compound serializer whose elements are single values.
macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl<S: $trait> $trait for Checked<'_, S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
                let index = self.index;
                self.index += 1;
                let inner = &mut self.inner;
                let at = self.at;
                nested(
                    at,
                    || Segment::Index(index),
                    |at| inner.$method(&Finite { value, at }),
                )
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.inner.end()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

/// Implements a compound serializer whose fields are named.
macro_rules! named {
    ($trait:ident) => {
        impl<S: $trait> $trait for Checked<'_, S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), S::Error> {
                let inner = &mut self.inner;
                nested(
                    self.at,
                    || Segment::Field(key),
                    |at| inner.serialize_field(key, &Finite { value, at }),
                )
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.inner.skip_field(key)
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.inner.end()
            }
        }
    };
}

named!(SerializeStruct);
named!(SerializeStructVariant);

impl<S: SerializeMap> SerializeMap for Checked<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        if self.at.is_some() {
            self.key = key_text(key);
        }
        self.inner.serialize_key(&Finite::new(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let key = self.key.take().unwrap_or_else(|| "?".to_owned());
        let inner = &mut self.inner;
        nested(
            self.at,
            || Segment::Key(key),
            |at| inner.serialize_value(&Finite { value, at }),
        )
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

/// A map key as text, for a path: serde_json's key, without its quotes.
fn key_text<T: Serialize + ?Sized>(key: &T) -> Option<String> {
    let json = serde_json::to_string(key).ok()?;
    Some(serde_json::from_str::<String>(&json).unwrap_or(json))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::Finite;

    fn json<T: Serialize>(value: &T) -> Result<String, String> {
        serde_json::to_string(&Finite::new(value)).map_err(|e| e.to_string())
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(f32),
        Tuple(u8, f64),
        Struct { x: f64 },
    }

    #[test]
    fn finite_values_are_written_as_serde_json_writes_them() {
        let value = (
            Some(1.5f64),
            vec![Shape::Unit, Shape::Newtype(2.0), Shape::Tuple(1, -0.0)],
            BTreeMap::from([("k", Shape::Struct { x: 1e300 })]),
            "text",
            serde_json::value::RawValue::from_string("[1, 2]".into()).unwrap(),
        );
        assert_eq!(
            json(&value).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
    }

    #[test]
    fn the_path_names_the_value_at_fault() {
        #[derive(Serialize)]
        struct Newtype(BTreeMap<String, Option<Vec<f64>>>);
        #[derive(Serialize)]
        struct Outer {
            ok: f64,
            inner: Option<Newtype>,
            shapes: Vec<Shape>,
        }
        let bad = |x: f64| Newtype([("a.b".to_owned(), Some(vec![1.0, x]))].into());
        let outer = |inner, shapes| Outer {
            ok: 1.0,
            inner: Some(inner),
            shapes,
        };
        assert_eq!(
            super::path_of_error(&outer(bad(f64::NAN), vec![])).as_deref(),
            Some("data.inner.a.b[1]")
        );
        assert_eq!(
            super::path_of_error(&outer(
                bad(0.0),
                vec![Shape::Unit, Shape::Struct { x: f64::NAN }]
            ))
            .as_deref(),
            Some("data.shapes[1].x")
        );
        assert_eq!(
            super::path_of_error(&BTreeMap::from([(7, (0.0, f32::NAN))])).as_deref(),
            Some("data.7[1]")
        );
        assert_eq!(super::path_of_error(&outer(bad(0.0), vec![])), None);
        assert_eq!(super::path_of_error(&f64::NAN), None);
    }

    #[test]
    fn non_finite_floats_are_refused_wherever_they_are() {
        for value in [
            json(&f64::NAN),
            json(&Some(f32::INFINITY)),
            json(&vec![0.0, f64::NEG_INFINITY]),
            json(&Shape::Newtype(f32::NAN)),
            json(&Shape::Tuple(1, f64::NAN)),
            json(&Shape::Struct { x: f64::NAN }),
            json(&BTreeMap::from([("k", f64::NAN)])),
            json(&(1, f64::NAN)),
        ] {
            let err = value.unwrap_err();
            assert!(err.contains("is not a JSON number"), "{err}");
        }
        assert_eq!(
            json(&f64::NEG_INFINITY).unwrap_err(),
            "`-inf` is not a JSON number (serde_json would write it as null)"
        );
    }
}
