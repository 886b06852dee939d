// Hardhat 2 serves only as a JSON-RPC test node (`hardhat node`): no compiler download, no plugins.
module.exports = { networks: { hardhat: { chainId: 31337 } } };
