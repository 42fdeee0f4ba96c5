//! The bridge emitted for each service: a zero-sized `<Service>Bridge` type that knows the
//! service's full gRPC name, role and plugin type, registers its server on a tonic router and
//! builds its typed client on a channel. It names the SDK only through `<sdk>::__codegen`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::Config;
use crate::model::{Role, Service};
use crate::names;

pub(crate) fn emit(config: &Config, sdk: &syn::Path, service: &Service) -> TokenStream {
    let cg = quote!(#sdk::__codegen);
    let bridge = format_ident!("{}", names::bridge_type(&service.name));
    let service_type = format_ident!("{}", names::service_type(&service.name));
    let full_name = &service.full_name;
    let file = &service.file;
    let (role, plugin_type, side) = match &service.role {
        Role::Plugin { plugin_type, side } => {
            let side = match side {
                Some(side) => quote!(::core::option::Option::Some(#side)),
                None => quote!(::core::option::Option::None),
            };
            (
                quote!(Plugin),
                quote!(::core::option::Option::Some(#plugin_type)),
                side,
            )
        }
        other => {
            let role = match other {
                Role::Service => quote!(Service),
                Role::HostService => quote!(HostService),
                _ => quote!(Private),
            };
            (
                role,
                quote!(::core::option::Option::None),
                quote!(::core::option::Option::None),
            )
        }
    };
    let what = match &service.role {
        Role::Plugin {
            plugin_type,
            side: Some(side),
        } => format!("plugin type `{side}/{plugin_type}`"),
        Role::Plugin {
            plugin_type,
            side: None,
        } => format!("plugin type `{plugin_type}`"),
        Role::Service => "a service plugins may serve".to_owned(),
        Role::HostService => "a host service, dialled by plugins through the broker".to_owned(),
        Role::Private => "private protocol plumbing".to_owned(),
    };
    let doc = format!(
        " Wires `{full_name}` ({what}) into the SDK runtime: its identity, its server and its client."
    );

    let client = config.build_client.then(|| {
        let module = format_ident!("{}", names::client_module(&service.name));
        let client = format_ident!("{}Client", service_type);
        quote! {
            impl #cg::ClientBridge for #bridge {
                type Client = #module::#client<#cg::Channel>;

                fn client(channel: #cg::Channel) -> Self::Client {
                    #module::#client::new(channel)
                        .max_decoding_message_size(#cg::MAX_MESSAGE_SIZE)
                        .max_encoding_message_size(#cg::MAX_MESSAGE_SIZE)
                }
            }
        }
    });
    let server = config.build_server.then(|| {
        let module = format_ident!("{}", names::server_module(&service.name));
        let server = format_ident!("{}Server", service_type);
        quote! {
            // Unused helpers are fine in a binary that includes the generated code privately.
            #[allow(dead_code)]
            impl #bridge {
                /// Wraps an implementation in its tonic server, with go-plugin's message size limits.
                pub fn server<T: #module::#service_type>(implementation: T) -> #module::#server<T> {
                    #module::#server::new(implementation)
                        .max_decoding_message_size(#cg::MAX_MESSAGE_SIZE)
                        .max_encoding_message_size(#cg::MAX_MESSAGE_SIZE)
                }

                /// Registers an implementation's server on a tonic router.
                pub fn register<T: #module::#service_type>(routes: &mut #cg::RoutesBuilder, implementation: T) {
                    routes.add_service(Self::server(implementation));
                }

                /// Packs an implementation with this service's identity, for the runtime to
                /// register when it builds its server.
                pub fn bridged<T: #module::#service_type>(implementation: T) -> #cg::BridgedServer {
                    #cg::BridgedServer::new(
                        <Self as #cg::ServiceBridge>::INFO,
                        move |routes| Self::register(routes, implementation),
                    )
                }
            }
        }
    });

    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy, Default)]
        #[allow(dead_code)]
        pub struct #bridge;

        impl #cg::ServiceBridge for #bridge {
            const INFO: #cg::ServiceInfo = #cg::ServiceInfo {
                full_name: #full_name,
                role: #cg::Role::#role,
                plugin_type: #plugin_type,
                side: #side,
                proto_file: #file,
            };
        }

        #client
        #server
    }
}
