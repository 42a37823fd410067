//! String enums for KubeRay's closed sets (submission modes, deletion
//! policies, upgrade strategies, ...). Each parses any string: a value we do
//! not know lands in `Unknown` instead of failing deserialisation, so one odd
//! object can be reported by validation rather than breaking a watch, and it
//! serialises back unchanged.
//!
//! Where KubeRay's CRD lists the values as an `enum`, ours does too (the API
//! server rejects others at apply time); where it does not, the schema stays a
//! plain string and the controller's validation names the bad value.

/// Declares a string enum. `closed` emits an `enum` list in the JSON schema,
/// `open` a plain string.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($kind:ident) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know; validation reports it.
            Unknown(String),
        }

        impl $name {
            /// Every known value, in declaration order.
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )+
                    Self::Unknown(s) => s,
                }
            }

            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Unknown(_))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $value => Self::$variant, )+
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok(Self::from(s.as_ref()))
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                string_enum!(@schema $kind [$($value),+])
            }
        }
    };
    (@schema closed [$($value:literal),+]) => {
        schemars::json_schema!({ "type": "string", "enum": [$($value),+] })
    };
    (@schema open [$($value:literal),+]) => {
        schemars::json_schema!({ "type": "string" })
    };
}

pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    string_enum! {
        enum Colour (closed) { Red = "red", Blue = "blue" }
    }

    #[test]
    fn known_and_unknown_values_round_trip() {
        let c: Colour = serde_json::from_str("\"red\"").unwrap();
        assert_eq!(c, Colour::Red);
        let u: Colour = serde_json::from_str("\"green\"").unwrap();
        assert_eq!(u, Colour::Unknown("green".into()));
        assert!(!u.is_known());
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"green\"");
        assert_eq!(Colour::VALUES, &["red", "blue"]);
    }

    #[test]
    fn closed_sets_list_their_values_in_the_schema() {
        let schema = schemars::schema_for!(Colour);
        assert_eq!(
            schema.get("enum").unwrap(),
            &serde_json::json!(["red", "blue"])
        );
    }
}
