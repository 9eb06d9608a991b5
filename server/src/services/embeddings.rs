//! Embeddings (`dolittle.runtime.embeddings.Embeddings` and `EmbeddingStore`), served to 5.4
//! heads only to refuse them clearly: Runtime 9, whose contract annals serves, has none, and a
//! JavaScript SDK 17 head that registers an embedding or reads one gets a Failure naming the
//! way forward instead of an UNIMPLEMENTED status it would retry without a word.

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::proto::dolittle::runtime::embeddings::embedding_client_to_runtime_message::Message as ClientMessage;
use crate::proto::dolittle::runtime::embeddings::embedding_runtime_to_client_message::Message as RuntimeMessage;
use crate::proto::dolittle::runtime::embeddings::embedding_store_server::EmbeddingStore;
use crate::proto::dolittle::runtime::embeddings::embeddings_server::Embeddings;
use crate::proto::dolittle::runtime::embeddings::{
    DeleteRequest, DeleteResponse, EmbeddingClientToRuntimeMessage, EmbeddingRegistrationResponse,
    EmbeddingRuntimeToClientMessage, GetAllRequest, GetAllResponse, GetKeysRequest,
    GetKeysResponse, GetOneRequest, GetOneResponse, UpdateRequest, UpdateResponse,
};

/// Embeddings are not supported (annals' own failure id).
pub(crate) const EMBEDDINGS_NOT_SUPPORTED: Uuid =
    Uuid::from_u128(0x3f4e_9b8a_21c7_4d55_8e0f_6a1d_c2b7_5e93);

fn not_supported() -> Failure {
    Failure::new(
        EMBEDDINGS_NOT_SUPPORTED,
        "Embeddings are not supported: annals serves the contract of Dolittle Runtime 9, which \
         removed them. Keep read models with projections (Projections.Connect and the \
         projection store) or aggregates instead.",
    )
}

/// Both embeddings services: every call is refused in band.
#[derive(Clone, Default)]
pub(crate) struct EmbeddingsService;

#[tonic::async_trait]
impl Embeddings for EmbeddingsService {
    async fn connect(
        &self,
        request: Request<Streaming<EmbeddingClientToRuntimeMessage>>,
    ) -> Result<Response<BoxStream<EmbeddingRuntimeToClientMessage>>, Status> {
        // The registration is answered once it arrives, as any reverse call's; the stream then
        // ends.
        let mut incoming = request.into_inner();
        let answer = async move {
            match incoming.message().await {
                Ok(Some(EmbeddingClientToRuntimeMessage {
                    message: Some(ClientMessage::RegistrationRequest(registration)),
                })) => {
                    let embedding = registration
                        .embedding_id
                        .as_ref()
                        .and_then(|id| crate::api::ids::from_wire("embeddingId", id).ok());
                    tracing::info!(
                        ?embedding,
                        "refused an embedding: embeddings are not supported"
                    );
                    Ok(EmbeddingRuntimeToClientMessage {
                        message: Some(RuntimeMessage::RegistrationResponse(
                            EmbeddingRegistrationResponse {
                                failure: Some(not_supported().to_wire()),
                            },
                        )),
                    })
                }
                Ok(_) => Err(Status::invalid_argument(
                    "the first message of an embedding connection must be its registration",
                )),
                Err(status) => Err(status),
            }
        };
        Ok(Response::new(Box::pin(futures_util::stream::once(answer))))
    }

    async fn update(&self, _: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        Ok(Response::new(UpdateResponse {
            state: None,
            failure: Some(not_supported().to_wire()),
        }))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(DeleteResponse {
            failure: Some(not_supported().to_wire()),
        }))
    }
}

#[tonic::async_trait]
impl EmbeddingStore for EmbeddingsService {
    async fn get_one(&self, _: Request<GetOneRequest>) -> Result<Response<GetOneResponse>, Status> {
        Ok(Response::new(GetOneResponse {
            state: None,
            failure: Some(not_supported().to_wire()),
        }))
    }

    async fn get_keys(
        &self,
        _: Request<GetKeysRequest>,
    ) -> Result<Response<GetKeysResponse>, Status> {
        Ok(Response::new(GetKeysResponse {
            keys: Vec::new(),
            failure: Some(not_supported().to_wire()),
        }))
    }

    async fn get_all(&self, _: Request<GetAllRequest>) -> Result<Response<GetAllResponse>, Status> {
        Ok(Response::new(GetAllResponse {
            states: Vec::new(),
            failure: Some(not_supported().to_wire()),
        }))
    }
}
