pub mod xds;
