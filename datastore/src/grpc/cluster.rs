//! `etcdserverpb.Cluster`: membership through openraft (learners first,
//! one voter change at a time), reported in etcd's shapes.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::st;
use crate::member::{LeaderCall, LeaderReply, Node};
use crate::proto::cluster_server::Cluster;
use crate::proto::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

pub struct ClusterService {
    pub node: Arc<Node>,
}

impl ClusterService {
    /// Waits until this member has applied a membership change made on the leader.
    async fn settle(&self, done: impl Fn(&[Member]) -> bool) -> Result<Vec<Member>, Status> {
        for _ in 0..100 {
            let members = self.node.members().map_err(st)?;
            if done(&members) {
                return Ok(members);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.node.members().map_err(st)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        if r.peer_ur_ls.is_empty() {
            return Err(Status::invalid_argument(
                "etcdserver: member peer URLs are required",
            ));
        }
        let reply = self
            .node
            .leader_call(LeaderCall::MemberAdd {
                peer_urls: r.peer_ur_ls.clone(),
                learner: r.is_learner,
            })
            .await
            .map_err(st)?;
        let LeaderReply::MemberAdded(id) = reply else {
            return Err(Status::internal(format!(
                "unexpected leader reply {reply:?}"
            )));
        };
        let members = self.settle(|ms| ms.iter().any(|m| m.id == id)).await?;
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: r.peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: r.is_learner,
        };
        Ok(Response::new(MemberAddResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        self.node
            .leader_call(LeaderCall::MemberRemove(id))
            .await
            .map_err(st)?;
        let members = self.settle(|ms| ms.iter().all(|m| m.id != id)).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
            members,
        }))
    }

    /// New peer URLs for a member (etcd's MemberUpdate, `etcdctl member
    /// update`): replicated as a membership change; peers dial the new URLs
    /// from then on. Restart the member listening on them.
    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        if r.peer_ur_ls.is_empty() {
            return Err(Status::invalid_argument(
                "etcdserver: member peer URLs are required",
            ));
        }
        let (id, urls) = (r.id, r.peer_ur_ls);
        self.node
            .leader_call(LeaderCall::MemberUpdate {
                id,
                peer_urls: urls.clone(),
            })
            .await
            .map_err(st)?;
        let members = self
            .settle(|ms| ms.iter().any(|m| m.id == id && m.peer_ur_ls == urls))
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.node.read_barrier().await.map_err(st)?;
        }
        let members = self.node.members().map_err(st)?;
        Ok(Response::new(MemberListResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
            members,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        self.node
            .leader_call(LeaderCall::MemberPromote(id))
            .await
            .map_err(st)?;
        let members = self
            .settle(|ms| ms.iter().any(|m| m.id == id && !m.is_learner))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
            members,
        }))
    }
}
