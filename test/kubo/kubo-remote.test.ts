import { KuboRemote } from "../../actors/kubo-remote.js";
import { remoteContract } from "../contract/remote.contract.js";
import { useIpfs } from "./ipfs-node.js";

const ipfsNode = useIpfs();

// KuboRemote straight on an IPFS RPC API (the js-ipfs harness, or $KUBO_API): the same contract as Remote.
remoteContract("KuboRemote on an IPFS RPC API", async () => ({ remote: new KuboRemote({ kuboApi: ipfsNode().url }), close: async () => {} }), { watches: false, linkedPages: false, boundsAnswers: false });
